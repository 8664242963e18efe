package lockfile

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Diff returns, one line each, how got differs from the locked resolution:
// a package of another version or digest, one not in the lock, one locked
// but no longer installed. Digests are compared only when both sides know
// them. Nil means got matches the lock.
func Diff(locked, got *Recipe) []string {
	want := map[string]Package{}
	for _, p := range locked.Packages {
		want[p.ID()] = p
	}
	var out []string
	seen := map[string]bool{}
	for _, g := range got.Packages {
		seen[g.ID()] = true
		l, ok := want[g.ID()]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("package %s: not in the lock, repository now resolves %s%s", g.Name, g.Version, sum(g.SHA256)))
		case l.Version != g.Version:
			out = append(out, fmt.Sprintf("package %s: locked %s%s, repository now resolves %s%s", g.Name, l.Version, sum(l.SHA256), g.Version, sum(g.SHA256)))
		case l.SHA256 != "" && g.SHA256 != "" && l.SHA256 != g.SHA256:
			out = append(out, fmt.Sprintf("package %s %s: locked sha256 %s, repository now serves sha256 %s", g.Name, g.Version, l.SHA256, g.SHA256))
		}
	}
	for _, l := range locked.Packages {
		if !seen[l.ID()] {
			out = append(out, fmt.Sprintf("package %s: locked %s%s, no longer installed", l.Name, l.Version, sum(l.SHA256)))
		}
	}
	return out
}

// sum is " (sha256 <first 12 hex digits>…)", or "" for no digest.
func sum(hex string) string {
	if hex == "" {
		return ""
	}
	return " (sha256 " + hex[:min(12, len(hex))] + "…)"
}

// CheckFile says whether the package file at URL path p, whose content has
// digest sha256 (hex; "" before it is known), may be installed under lock
// r: its name, version and arch (from the file name) must be locked, and
// its digest the locked one when both are known. The error is one line of
// Diff's kind.
func (r *Recipe) CheckFile(p, sha256 string) error {
	name, version, arch, ok := ParseFileName(p)
	if !ok {
		return fmt.Errorf("package file %s: not in the lock (not a package file name)", p)
	}
	var named *Package
	for i := range r.Packages {
		l := &r.Packages[i]
		if l.Name != name {
			continue
		}
		named = l
		if l.Arch != arch || withoutEpoch(l.Version) != version {
			continue
		}
		if sha256 != "" && l.SHA256 != "" && l.SHA256 != sha256 {
			return fmt.Errorf("package %s %s: locked sha256 %s, repository now serves sha256 %s (%s)", name, l.Version, l.SHA256, sha256, p)
		}
		return nil
	}
	if named != nil {
		return fmt.Errorf("package %s: locked %s%s, repository now resolves %s (%s)", name, named.Version, sum(named.SHA256), version, p)
	}
	return fmt.Errorf("package %s: not in the lock, repository now resolves %s (%s)", name, version, p)
}

// ParseFileName returns the name, version (without epoch) and arch of a
// package file from its URL path: name_version_arch.deb (.udeb) with the
// version's ":" possibly escaped as %3a, or name-version-release.arch.rpm
// (the version is then "version-release").
func ParseFileName(p string) (name, version, arch string, ok bool) {
	base := path.Base(p)
	if u, err := url.PathUnescape(base); err == nil {
		base = u
	}
	if stem, deb := cutAnySuffix(base, ".deb", ".udeb"); deb {
		parts := strings.Split(stem, "_")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return "", "", "", false
		}
		return parts[0], withoutEpoch(parts[1]), parts[2], true
	}
	if stem, rpm := strings.CutSuffix(base, ".rpm"); rpm {
		dot := strings.LastIndexByte(stem, '.')
		if dot <= 0 {
			return "", "", "", false
		}
		nvr, arch := stem[:dot], stem[dot+1:]
		rel := strings.LastIndexByte(nvr, '-')
		if rel <= 0 {
			return "", "", "", false
		}
		ver := strings.LastIndexByte(nvr[:rel], '-')
		if ver <= 0 || arch == "" || rel == len(nvr)-1 || ver == rel-1 {
			return "", "", "", false
		}
		return nvr[:ver], withoutEpoch(nvr[ver+1:]), arch, true
	}
	return "", "", "", false
}

func cutAnySuffix(s string, suffixes ...string) (string, bool) {
	for _, x := range suffixes {
		if t, ok := strings.CutSuffix(s, x); ok {
			return t, true
		}
	}
	return s, false
}

// withoutEpoch drops "epoch:" from a version: package file names have none.
func withoutEpoch(v string) string {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		return v[i+1:]
	}
	return v
}

// Carry returns got with what old knew of its unchanged packages: a
// package of the same name, arch and version whose file this resolution
// did not see (taken from a package cache: no digest or path) or saw with
// the same digest keeps old's digest and path. So re-resolving an
// unchanged recipe does not churn the lock file with what the caches
// happened to hold.
func Carry(old, got *Recipe) *Recipe {
	if old == nil {
		return got
	}
	prev := map[string]Package{}
	for _, p := range old.Packages {
		prev[p.ID()] = p
	}
	out := &Recipe{Repositories: got.Repositories, Packages: make([]Package, len(got.Packages))}
	for i, p := range got.Packages {
		if o, ok := prev[p.ID()]; ok && o.Version == p.Version && (p.SHA256 == "" || p.SHA256 == o.SHA256) {
			if p.SHA256 == "" {
				p.SHA256 = o.SHA256
			}
			if p.Path == "" {
				p.Path = o.Path
			}
		}
		out.Packages[i] = p
	}
	return out
}
