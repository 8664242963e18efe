package pkgproxy

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestPackageURL(t *testing.T) {
	for _, tc := range []struct {
		method, url string
		want        string // canonical form; "" = not cacheable
	}{
		{"GET", "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb", "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb"},
		{"HEAD", "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb", "http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb"},
		{"GET", "http://Deb.Debian.ORG:80/debian/pool/x.udeb", "http://deb.debian.org/debian/pool/x.udeb"},
		{"GET", "http://mirror:8080/suse/x86_64/kernel-default-6.4.0-150600.23.7.3.x86_64.rpm", "http://mirror:8080/suse/x86_64/kernel-default-6.4.0-150600.23.7.3.x86_64.rpm"},
		{"GET", "http://mirror:0080/repo/delta.drpm", "http://mirror/repo/delta.drpm"},
		{"GET", "http://[::1]:8080/pool/x.deb", "http://[::1]:8080/pool/x.deb"},
		{"GET", "http://[0:0::1]/pool/x.deb", "http://[::1]/pool/x.deb"},
		{"GET", "http://10.1.2.3/pool/a%20b.deb", "http://10.1.2.3/pool/a%20b.deb"},
		// Metadata and everything else.
		{"GET", "http://deb.debian.org/debian/dists/bookworm/InRelease", ""},
		{"GET", "http://deb.debian.org/debian/dists/bookworm/Release", ""},
		{"GET", "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/Packages.xz", ""},
		{"GET", "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/0123", ""},
		{"GET", "http://mirror/suse/repodata/repomd.xml", ""},
		{"GET", "http://mirror/suse/repodata/abc-primary.xml.zst", ""},
		{"GET", "http://mirror/pool/x.deb.sig", ""},
		{"GET", "http://mirror/pool/x.DEB", ""},
		{"GET", "http://mirror/pool/.deb", ""},
		{"GET", "http://mirror/pool/x.deb/", ""},
		{"GET", "http://mirror/pool/x.deb?token=1", ""},
		{"GET", "http://mirror/pool/x.deb?", ""},
		{"GET", "http://mirror/pool/x.deb#frag", ""},
		{"GET", "http://user:pw@mirror/pool/x.deb", ""},
		{"GET", "https://mirror/pool/x.deb", ""},
		{"GET", "ftp://mirror/pool/x.deb", ""},
		{"GET", "/pool/x.deb", ""},
		{"GET", "http://mirror:/pool/x.deb", ""},
		{"GET", "http://[fe80::1%25eth0]/pool/x.deb", ""},
		{"POST", "http://mirror/pool/x.deb", ""},
		{"PUT", "http://mirror/pool/x.deb", ""},
		{"DELETE", "http://mirror/pool/x.rpm", ""},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q) = %v", tc.url, err)
		}
		got, ok := packageURL(tc.method, u)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("packageURL(%s, %s) = %q, %v; want %q", tc.method, tc.url, got, ok, tc.want)
		}
	}
}

func TestIndexKey(t *testing.T) {
	key, pre := indexKey("http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb")
	const wantPre = `{"type":"imsbuild/pkgproxy/v1","url":"http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb"}`
	if string(pre) != wantPre {
		t.Errorf("preimage = %s, want %s", pre, wantPre)
	}
	// Pinned: a change of the key scheme must bump keyType.
	if want := "f1b5a131cc3c93c6e7079a71039f4a5be362edc91b38770d44a9fdb10ec13d93"; key != want {
		t.Errorf("indexKey() = %s, want %s", key, want)
	}
}

// FuzzPackageURL checks the classification of request URLs: it never
// panics, only GET and HEAD of plain http:// package paths are cacheable,
// and the canonical form is a fixed point with a well-formed key.
func FuzzPackageURL(f *testing.F) {
	for _, s := range []string{
		"http://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb",
		"http://Mirror:80/a.udeb",
		"http://[::1]:8080/x.rpm",
		"http://h/dists/bookworm/InRelease",
		"http://h/x.deb?x=1",
		"http://u@h/x.drpm",
		"http://h:0/x.deb",
		"http://a%41b/x.deb",
		"http://h/a%2Fb.deb",
		"http://h/%zz.deb",
		"https://h/x.deb",
	} {
		f.Add("GET", s)
	}
	f.Add("HEAD", "http://h/p/x.rpm")
	f.Add("POST", "http://h/p/x.rpm")
	f.Fuzz(func(t *testing.T, method, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		canon, ok := packageURL(method, u)
		if !ok {
			if canon != "" {
				t.Fatalf("packageURL(%q, %q) = %q, false; want empty", method, raw, canon)
			}
			return
		}
		if method != http.MethodGet && method != http.MethodHead {
			t.Fatalf("packageURL(%q, %q) cacheable", method, raw)
		}
		if u.Scheme != "http" || u.RawQuery != "" || u.User != nil {
			t.Fatalf("packageURL(%q) cacheable with scheme %q, query %q, user %v", raw, u.Scheme, u.RawQuery, u.User)
		}
		if !strings.HasPrefix(canon, "http://") {
			t.Fatalf("canonical %q of %q is not http://", canon, raw)
		}
		hasExt := false
		for _, ext := range packageExts {
			hasExt = hasExt || strings.HasSuffix(canon, ext)
		}
		if !hasExt {
			t.Fatalf("canonical %q of %q has no package extension", canon, raw)
		}
		cu, err := url.Parse(canon)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", canon, raw, err)
		}
		again, ok := packageURL(http.MethodGet, cu)
		if !ok || again != canon {
			t.Fatalf("packageURL(canonical %q) = %q, %v; want it unchanged", canon, again, ok)
		}
		key, pre := indexKey(canon)
		if len(key) != 64 || strings.Trim(key, "0123456789abcdef") != "" {
			t.Fatalf("indexKey(%q) = %q, want 64 hex digits", canon, key)
		}
		if !strings.Contains(string(pre), canon) {
			t.Fatalf("preimage %s does not hold %q verbatim", pre, canon)
		}
	})
}
