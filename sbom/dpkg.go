package sbom

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
)

// maxLine bounds one line of a dpkg status file. Real lines are short
// (descriptions wrap at 80 columns); a longer one is a hostile or broken
// database, and the bound keeps memory flat.
const maxLine = 1 << 20

// ParseDpkgStatus parses a dpkg status database (var/lib/dpkg/status, deb822
// paragraphs) and returns the packages whose files are on disk, in file
// order: every state but not-installed and config-files (those have no files
// left but conffiles). It is strict where dpkg is: a line that is neither a
// field nor a continuation, a paragraph without Package, or a duplicate field
// is an error naming the line.
func ParseDpkgStatus(r io.Reader) ([]Package, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		pkgs   []Package
		seen   []string              // the paragraph's field names, lowercase
		fields = map[string]string{} // its kept fields
		start  int                   // line of the paragraph's first field
		last   string                // field a continuation line belongs to
		line   int
	)
	flush := func() error {
		if len(seen) == 0 {
			return nil
		}
		p, keep, err := dpkgPackage(fields)
		if err != nil {
			return fmt.Errorf("line %d: %w", start, err)
		}
		if keep {
			pkgs = append(pkgs, p)
		}
		clear(fields)
		seen, last = seen[:0], ""
		return nil
	}
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if b[0] == ' ' || b[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation line outside a field", line)
			}
			// The kept fields are single-line in practice; a continuation of
			// one is appended so that nothing is lost (and oneLine drops it
			// later). Others (Description, Conffiles) are not stored.
			if dpkgKept[last] {
				fields[last] += "\n" + strings.TrimSpace(string(b))
			}
			continue
		}
		name, value, ok := bytes.Cut(b, []byte{':'})
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("line %d: not a field: %.40q", line, b)
		}
		key, ok := dpkgFieldNames[string(name)] // no allocation for known names
		if !ok {
			key = strings.ToLower(string(name))
		}
		if len(seen) == 0 {
			start = line
		}
		if slices.Contains(seen, key) {
			return nil, fmt.Errorf("line %d: duplicate field %s", line, name)
		}
		seen = append(seen, key)
		last = key
		if dpkgKept[key] {
			fields[key] = string(bytes.TrimSpace(value))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", line+1, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return pkgs, nil
}

// dpkgFieldNames maps the usual spelling of dpkg status fields to their
// lowercase key, so that the parser does not allocate a lowercase copy of
// every field name.
var dpkgFieldNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Package", "Status", "Priority", "Section", "Installed-Size", "Maintainer",
		"Architecture", "Multi-Arch", "Source", "Version", "Replaces", "Provides", "Depends", "Pre-Depends",
		"Recommends", "Suggests", "Breaks", "Conflicts", "Enhances", "Conffiles", "Description", "Homepage",
		"Built-Using", "Essential", "Protected", "Important", "Config-Version", "Description-md5", "Tag",
		"Static-Built-Using", "Triggers-Pending", "Triggers-Awaited", "Original-Maintainer"} {
		m[n] = strings.ToLower(n)
	}
	return m
}()

// dpkgKept are the fields an SBOM entry uses (lowercase: deb822 field names
// are case-insensitive).
var dpkgKept = map[string]bool{
	"package": true, "status": true, "version": true, "architecture": true,
	"source": true, "maintainer": true, "homepage": true,
}

// dpkgPackage makes a Package of one paragraph; keep is false for a package
// whose files are not installed.
func dpkgPackage(f map[string]string) (p Package, keep bool, err error) {
	name := f["package"]
	if name == "" {
		return p, false, fmt.Errorf("paragraph without Package")
	}
	if !validDebName(name) {
		return p, false, fmt.Errorf("invalid package name %.40q", name)
	}
	st := strings.Fields(f["status"])
	if len(st) != 3 {
		return p, false, fmt.Errorf("package %s: invalid Status %.40q", name, f["status"])
	}
	switch st[2] {
	case "not-installed", "config-files":
		return p, false, nil
	case "installed", "half-installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending":
	default:
		return p, false, fmt.Errorf("package %s: unknown status %.40q", name, st[2])
	}
	p = Package{
		Type:       TypeDeb,
		Name:       name,
		Version:    oneLine(f["version"]),
		Arch:       oneLine(f["architecture"]),
		Source:     oneLine(f["source"]),
		Maintainer: oneLine(f["maintainer"]),
		Homepage:   oneLine(f["homepage"]),
	}
	// Source may carry the source version: "glibc (2.36-9)".
	if src, _, ok := strings.Cut(p.Source, " "); ok {
		p.Source = src
	}
	return p, true, nil
}

// validDebName reports whether s is a Debian package name (policy 5.6.1:
// lowercase letters, digits, + - ., at least two characters, starting
// alphanumeric). Names are used as paths (usr/share/doc/NAME), so this check
// also keeps a hostile status file from naming "../x".
func validDebName(s string) bool {
	if len(s) < 2 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// oneLine drops continuation lines and control characters: SBOM fields are
// single-line strings, and control characters in them could forge lines in
// the tag-value form or a terminal.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
