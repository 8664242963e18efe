package treediff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What a Change is about.
const (
	Missing = "missing" // in the old tree only
	Extra   = "extra"   // in the new tree only
	Type    = "type"    // a file became a directory, a symlink…
	Content = "content" // regular file bytes
	Mode    = "mode"    // permission bits, setuid, setgid and sticky
	Owner   = "owner"   // uid:gid
	Mtime   = "mtime"
	Symlink = "symlink" // the link target
	Device  = "device"  // major,minor of a device node
	Xattr   = "xattr"   // Old and New name the attribute and its value
)

// Change is one difference at Path ("/" is the root, "/etc/passwd" a file
// in it). Old and New say what each tree has, in a form for people (a mode
// in octal, a time in RFC 3339); empty when there is nothing to say.
type Change struct {
	Path string `json:"path"`
	What string `json:"what"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

func (c Change) String() string {
	switch {
	case c.What == Missing || c.What == Extra:
		return fmt.Sprintf("%s: %s", c.Path, c.What)
	case c.What == Content && c.Old == "":
		return fmt.Sprintf("%s: content differs", c.Path)
	case c.What == Content:
		return fmt.Sprintf("%s: content differs (%s → %s)", c.Path, c.Old, c.New)
	}
	return fmt.Sprintf("%s: %s %s → %s", c.Path, c.What, orNone(c.Old), orNone(c.New))
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Report is the outcome of a comparison: the first changes in path order,
// and how many there are in all.
type Report struct {
	Changes []Change `json:"changes,omitempty"`
	Total   int      `json:"total"`
}

// DefaultMax is how many changes a report keeps when max is < 1.
const DefaultMax = 20

// Dirs compares the trees at oldDir and newDir and keeps the first max
// changes (DefaultMax when max < 1). Symlinks are compared, never followed.
func Dirs(ctx context.Context, oldDir, newDir string, max int) (*Report, error) {
	if max < 1 {
		max = DefaultMax
	}
	d := &differ{ctx: ctx, old: oldDir, new: newDir, max: max, rep: &Report{}}
	if err := d.entry("/"); err != nil {
		return nil, err
	}
	return d.rep, nil
}

type differ struct {
	ctx      context.Context
	old, new string
	max      int
	rep      *Report
}

func (d *differ) add(c Change) {
	d.rep.Total++
	if len(d.rep.Changes) < d.max {
		d.rep.Changes = append(d.rep.Changes, c)
	}
}

// entry compares rel (slash-separated, from "/") in both trees; both exist.
func (d *differ) entry(rel string) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	op, np := filepath.Join(d.old, filepath.FromSlash(rel)), filepath.Join(d.new, filepath.FromSlash(rel))
	var os_, ns unix.Stat_t
	if err := unix.Lstat(op, &os_); err != nil {
		return fmt.Errorf("compare %s: %w", op, err)
	}
	if err := unix.Lstat(np, &ns); err != nil {
		return fmt.Errorf("compare %s: %w", np, err)
	}
	ot, nt := os_.Mode&unix.S_IFMT, ns.Mode&unix.S_IFMT
	if ot != nt {
		d.add(Change{Path: rel, What: Type, Old: typeName(ot), New: typeName(nt)})
		return nil
	}
	switch ot {
	case unix.S_IFREG:
		same, err := sameContent(op, np, os_.Size, ns.Size)
		if err != nil {
			return err
		}
		if !same {
			c := Change{Path: rel, What: Content}
			if os_.Size != ns.Size {
				c.Old, c.New = fmt.Sprintf("%d bytes", os_.Size), fmt.Sprintf("%d bytes", ns.Size)
			}
			d.add(c)
		}
	case unix.S_IFLNK:
		ol, err := os.Readlink(op)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		nl, err := os.Readlink(np)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		if ol != nl {
			d.add(Change{Path: rel, What: Symlink, Old: ol, New: nl})
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if os_.Rdev != ns.Rdev {
			d.add(Change{Path: rel, What: Device, Old: devName(os_.Rdev), New: devName(ns.Rdev)})
		}
	}
	if om, nm := os_.Mode&0o7777, ns.Mode&0o7777; om != nm && ot != unix.S_IFLNK {
		d.add(Change{Path: rel, What: Mode, Old: fmt.Sprintf("%04o", om), New: fmt.Sprintf("%04o", nm)})
	}
	if os_.Uid != ns.Uid || os_.Gid != ns.Gid {
		d.add(Change{Path: rel, What: Owner, Old: fmt.Sprintf("%d:%d", os_.Uid, os_.Gid), New: fmt.Sprintf("%d:%d", ns.Uid, ns.Gid)})
	}
	if os_.Mtim != ns.Mtim {
		d.add(Change{Path: rel, What: Mtime, Old: timeName(os_.Mtim), New: timeName(ns.Mtim)})
	}
	if err := d.xattrs(rel, op, np); err != nil {
		return err
	}
	if ot == unix.S_IFDIR {
		return d.dir(rel, op, np)
	}
	return nil
}

// dir merges the sorted listings of a directory present in both trees.
func (d *differ) dir(rel, op, np string) error {
	on, err := names(op)
	if err != nil {
		return err
	}
	nn, err := names(np)
	if err != nil {
		return err
	}
	i, j := 0, 0
	for i < len(on) || j < len(nn) {
		switch {
		case j == len(nn) || i < len(on) && on[i] < nn[j]:
			d.add(Change{Path: path.Join(rel, on[i]), What: Missing})
			i++
		case i == len(on) || nn[j] < on[i]:
			d.add(Change{Path: path.Join(rel, nn[j]), What: Extra})
			j++
		default:
			if err := d.entry(path.Join(rel, on[i])); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

func names(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	defer f.Close()
	n, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("compare %s: %w", dir, err)
	}
	slices.Sort(n)
	return n, nil
}

// sameContent compares two regular files byte by byte, streaming.
func sameContent(op, np string, osize, nsize int64) (bool, error) {
	if osize != nsize {
		return false, nil
	}
	of, err := os.Open(op)
	if err != nil {
		return false, fmt.Errorf("compare: %w", err)
	}
	defer of.Close()
	nf, err := os.Open(np)
	if err != nil {
		return false, fmt.Errorf("compare: %w", err)
	}
	defer nf.Close()
	ob, nb := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		on, oerr := io.ReadFull(of, ob)
		nn, nerr := io.ReadFull(nf, nb)
		if on != nn || !bytes.Equal(ob[:on], nb[:nn]) {
			return false, nil
		}
		oend := oerr == io.EOF || oerr == io.ErrUnexpectedEOF
		nend := nerr == io.EOF || nerr == io.ErrUnexpectedEOF
		switch {
		case oerr != nil && !oend:
			return false, fmt.Errorf("compare %s: %w", op, oerr)
		case nerr != nil && !nend:
			return false, fmt.Errorf("compare %s: %w", np, nerr)
		case oend || nend:
			return oend == nend, nil
		}
	}
}

// xattrs compares the extended attributes of one path in both trees.
func (d *differ) xattrs(rel, op, np string) error {
	oa, err := readXattrs(op)
	if err != nil {
		return err
	}
	na, err := readXattrs(np)
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(oa)+len(na))
	for k := range oa {
		keys = append(keys, k)
	}
	for k := range na {
		if _, ok := oa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		ov, ook := oa[k]
		nv, nok := na[k]
		if ook == nok && ov == nv {
			continue
		}
		c := Change{Path: rel, What: Xattr}
		if ook {
			c.Old = k + "=" + quoteValue(ov)
		}
		if nok {
			c.New = k + "=" + quoteValue(nv)
		}
		d.add(c)
	}
	return nil
}

func readXattrs(p string) (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) { // a long list: ask its size
		var sz int
		if sz, err = unix.Llistxattr(p, nil); err != nil {
			return nil, fmt.Errorf("xattrs of %s: %w", p, err)
		}
		buf = make([]byte, sz)
		n, err = unix.Llistxattr(p, buf)
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v, err := getXattr(p, name)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(p, name, nil)
			if err != nil {
				return "", fmt.Errorf("xattr %s of %s: %w", name, p, err)
			}
			buf = make([]byte, sz)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("xattr %s of %s: %w", name, p, err)
		}
		return string(buf[:n]), nil
	}
}

// quoteValue shows an attribute value: text as a Go string, binary (a
// capability set, an ACL) by its length only.
func quoteValue(v string) string {
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f || r == '\uFFFD' {
			return fmt.Sprintf("(%d bytes)", len(v))
		}
	}
	return fmt.Sprintf("%q", v)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type %o", t)
}

func devName(rdev uint64) string {
	return fmt.Sprintf("%d,%d", unix.Major(rdev), unix.Minor(rdev))
}

func timeName(ts unix.Timespec) string {
	return time.Unix(ts.Sec, ts.Nsec).UTC().Format(time.RFC3339Nano)
}
