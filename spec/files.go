package spec

import (
	"path"
	"sort"

	"github.com/hashicorp/hcl/v2"
)

// fileEntry is one file copy of a customize block with the range of its
// destination, so that a duplicate can point at both places.
type fileEntry struct {
	copy FileCopy
	rng  hcl.Range // the destination expression
	ok   bool      // false: an error was reported; checked for duplicates only
}

// decodeFiles decodes files = { "/dest" = "src" } (attr may be nil) and the
// file blocks of a customize block into one list sorted by Dest. A
// destination copied twice is reported at the later place.
func (l *loader) decodeFiles(attr *hcl.Attribute, blocks hcl.Blocks) []FileCopy {
	var entries []fileEntry
	if attr != nil {
		entries = l.fileMap(attr)
	}
	for _, b := range blocks {
		if e, ok := l.fileBlock(b); ok {
			entries = append(entries, e)
		}
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].rng.Start.Byte < entries[j].rng.Start.Byte })
	seen := map[string]hcl.Range{}
	var out []FileCopy
	for _, e := range entries {
		if prev, dup := seen[e.copy.Dest]; dup {
			l.errorf(e.rng, "Duplicate file destination",
				"%q is already copied by the entry at %s; copy each destination once per customize block.", e.copy.Dest, posString(prev))
			continue
		}
		seen[e.copy.Dest] = e.rng
		if e.ok {
			out = append(out, e.copy)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dest < out[j].Dest })
	return out
}

// fileMap decodes files = { "/dest" = "src" }, checking each destination at
// its key's range when the map is a literal.
func (l *loader) fileMap(attr *hcl.Attribute) []fileEntry {
	pairs, diags := hcl.ExprMap(attr.Expr)
	if diags.HasErrors() {
		// Not a literal map: decode the value as a whole.
		var m map[string]string
		l.attrs(hcl.Attributes{attr.Name: attr}, l.ctx).strMap(attr.Name, &m)
		var out []fileEntry
		for _, dest := range keys(m) {
			e, ok := l.fileEntry(dest, m[dest], attr.Expr.Range(), attr.Expr.Range())
			if ok {
				out = append(out, e)
			}
		}
		return out
	}
	var out []fileEntry
	for _, p := range pairs {
		k, okK := l.evalString(p.Key)
		v, okV := l.evalString(p.Value)
		if !okK {
			continue
		}
		e, ok := l.fileEntry(k, v, p.Key.Range(), p.Value.Range())
		if !ok {
			continue
		}
		e.ok = e.ok && okV
		out = append(out, e)
	}
	return out
}

// fileEntry checks one entry of a files map. ok is false when the
// destination is unusable.
func (l *loader) fileEntry(dest, src string, destRange, srcRange hcl.Range) (fileEntry, bool) {
	d, ok := l.fileDest(dest, destRange)
	if !ok {
		return fileEntry{}, false
	}
	e := fileEntry{copy: FileCopy{Dest: d}, rng: destRange, ok: true}
	if src == "" {
		l.errorf(srcRange, "Invalid file source", "The source path of %q must not be empty.", d)
		e.ok = false
	} else {
		e.copy.Source = l.r.abs(src)
	}
	return e, true
}

// fileBlock decodes file { source destination mode owner }. ok is false when
// the destination is missing or unusable.
func (l *loader) fileBlock(b *hcl.Block) (fileEntry, bool) {
	c := l.content(b.Body, fileSchema)
	a := l.attrs(c.Attributes, l.ctx)
	var e fileEntry
	srcOK := a.path("source", &e.copy.Source) != nil
	var dest string
	dattr := a.str("destination", &dest)
	if dattr == nil {
		return e, false
	}
	e.rng = dattr.Expr.Range()
	d, ok := l.fileDest(dest, e.rng)
	if !ok {
		return e, false
	}
	e.copy.Dest = d
	e.ok = srcOK
	var mode string
	if attr := a.str("mode", &mode); attr != nil {
		m, err := ParseMode(mode)
		if err != nil {
			l.errorf(attr.Expr.Range(), "Invalid file mode", "%s.", capitalize(err.Error()))
			e.ok = false
		} else {
			e.copy.Mode, e.copy.HasMode = m, true
		}
	}
	if attr := a.str("owner", &e.copy.Owner); attr != nil {
		if _, _, err := ParseOwner(e.copy.Owner); err != nil {
			l.errorf(attr.Expr.Range(), "Invalid file owner", "%s.", capitalize(err.Error()))
			e.ok = false
		}
	}
	return e, true
}

// fileDest checks a destination: an absolute path below the image root. It
// returns the cleaned path.
func (l *loader) fileDest(dest string, rng hcl.Range) (string, bool) {
	d := path.Clean(dest)
	switch {
	case !path.IsAbs(dest):
		l.errorf(rng, "Invalid file destination",
			"%q is not an absolute path inside the image; use a path like \"/etc/motd\".", dest)
		return "", false
	case d == "/":
		l.errorf(rng, "Invalid file destination",
			"%q is the image root, not a file; use a path like \"/etc/motd\".", dest)
		return "", false
	}
	return d, true
}
