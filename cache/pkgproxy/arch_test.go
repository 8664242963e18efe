package pkgproxy

import (
	"bytes"
	"net/http"
	"testing"
)

// A package's architecture is in its file name (name_version_arch.deb,
// name-version-release.arch.rpm), so in its URL, so in its index key: the
// arm64 build of a package is kept apart from the amd64 one of the same
// name and version, and an arch-independent package (_all, noarch) is kept
// once for both (the same bytes).
func TestArchesKeptApart(t *testing.T) {
	m := newMirror(t)
	files := map[string][]byte{
		"/pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb":       content(10, 64<<10),
		"/pool/main/b/bash/bash_5.2.15-2+b7_arm64.deb":       content(11, 64<<10),
		"/pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb": content(12, 32<<10),
		"/repo/x86_64/bash-5.2.15-3.el9.x86_64.rpm":          content(13, 64<<10),
		"/repo/aarch64/bash-5.2.15-3.el9.aarch64.rpm":        content(14, 64<<10),
		"/repo/noarch/tzdata-2024a-1.el9.noarch.rpm":         content(15, 32<<10),
	}
	for p, b := range files {
		m.files[p] = b
	}
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	digests := map[string]string{}
	for path, want := range files {
		_, body := mustGet(t, client, http.MethodGet, m.url(path), http.StatusOK)
		if !bytes.Equal(body, want) {
			t.Fatalf("%s: got %d bytes, want the mirror's %d", path, len(body), len(want))
		}
		res := indexed(t, p, c, m.url(path))
		if res == nil {
			t.Fatalf("%s not indexed", path)
		}
		digests[path] = string(res.Outputs[output].Digest)
	}
	// Again, from a later build's proxy: each arch gets its own bytes.
	p2 := startProxy(t, c)
	client2 := proxyClient(t, p2)
	for path, want := range files {
		_, body := mustGet(t, client2, http.MethodGet, m.url(path), http.StatusOK)
		if !bytes.Equal(body, want) || m.count(path) != 1 {
			t.Errorf("%s from the cache: %d bytes (want the mirror's %d), %d upstream requests (want 1)", path, len(body), len(want), m.count(path))
		}
	}
	if digests["/pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb"] == digests["/pool/main/b/bash/bash_5.2.15-2+b7_arm64.deb"] ||
		digests["/repo/x86_64/bash-5.2.15-3.el9.x86_64.rpm"] == digests["/repo/aarch64/bash-5.2.15-3.el9.aarch64.rpm"] {
		t.Errorf("amd64 and arm64 packages share a blob: %v", digests)
	}
	if s := stats(t, p2); s.Hits != int64(len(files)) || s.Misses != 0 {
		t.Errorf("second proxy stats = %+v, want %d hits and no miss", s, len(files))
	}
}
