package kiwi

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

const indexAmd64 = `Package: foo
Version: 1:2.0-1
Architecture: amd64
Filename: pool/main/f/foo/foo_2.0-1_amd64.deb
Size: 10
SHA256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
Description: foo
 continued: a line with a colon

Package: foo
Version: 1:1.0-1
Architecture: amd64
Filename: pool/main/f/foo/foo_1.0-1_amd64.deb
SHA256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb

Package: evil
Version: 1
Architecture: amd64
Filename: ../../etc/passwd
SHA256: cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
`

const indexAll = `Package: doc
Version: 3
Architecture: all
Filename: pool/main/d/doc/doc_3_all.deb
SHA256: dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd
`

// An apt repository under /debian: binary-amd64 as Packages.gz, binary-all
// plain, both listed in an InRelease; tamper changes the amd64 index after
// the Release was made.
func indexRepo(t *testing.T, tamper bool) *httptest.Server {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(indexAmd64))
	zw.Close()
	amd64 := gz.Bytes()
	release := fmt.Sprintf("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: stable\nMD5Sum:\n 0123 1 main/binary-amd64/Packages.gz\nSHA256:\n %s %d main/binary-amd64/Packages.gz\n %s %d main/binary-all/Packages\n-----BEGIN PGP SIGNATURE-----\nxyz\n",
		testutil.SHA256Hex(amd64), len(amd64), testutil.SHA256Hex([]byte(indexAll)), len(indexAll))
	if tamper {
		amd64 = append([]byte(nil), amd64...)
		amd64[len(amd64)-5] ^= 1
	}
	files := map[string][]byte{
		"/debian/dists/stable/InRelease":                     []byte(release),
		"/debian/dists/stable/main/binary-amd64/Packages.gz": amd64,
		"/debian/dists/stable/main/binary-all/Packages":      []byte(indexAll),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAptIndex(t *testing.T) {
	srv := indexRepo(t, false)
	repo := &spec.Repository{Name: "debian", Type: "apt", URL: srv.URL + "/debian/", Distribution: "stable"}
	want := map[string]bool{
		IndexKey("foo", "1:2.0-1", "amd64"): true,
		IndexKey("doc", "3", "all"):         true,
		IndexKey("evil", "1", "amd64"):      true,
		IndexKey("absent", "1", "amd64"):    true,
	}
	got, err := AptIndex(t.Context(), srv.Client(), repo, []string{"amd64"}, func(k string) bool { return want[k] })
	if err != nil {
		t.Fatalf("AptIndex() = %v", err)
	}
	wantEntries := map[string]IndexEntry{
		IndexKey("foo", "1:2.0-1", "amd64"): {Path: "/debian/pool/main/f/foo/foo_2.0-1_amd64.deb", SHA256: strings.Repeat("a", 64)},
		IndexKey("doc", "3", "all"):         {Path: "/debian/pool/main/d/doc/doc_3_all.deb", SHA256: strings.Repeat("d", 64)},
	}
	if d := cmp.Diff(wantEntries, got); d != "" {
		t.Errorf("AptIndex() (-want +got):\n%s", d)
	}

	if _, err := AptIndex(t.Context(), srv.Client(), repo, []string{"amd64"}, func(string) bool { return true }); err != nil {
		t.Errorf("AptIndex(all) = %v", err)
	}
	tampered := indexRepo(t, true)
	repo.URL = tampered.URL + "/debian"
	if _, err := AptIndex(t.Context(), tampered.Client(), repo, []string{"amd64"}, func(string) bool { return true }); err == nil {
		t.Error("AptIndex of an index that is not the Release's = nil error")
	} else if !errors.Is(err, errIndexChanged) && !strings.Contains(err.Error(), "gzip") && !strings.Contains(err.Error(), "checksum") {
		t.Errorf("AptIndex of a tampered index = %v", err)
	}
	for _, r := range []*spec.Repository{
		{Name: "flat", Type: "apt", URL: srv.URL},
		{Name: "rpm", Type: "rpm-md", URL: srv.URL, Distribution: "x"},
	} {
		if got, err := AptIndex(t.Context(), srv.Client(), r, []string{"amd64"}, func(string) bool { return true }); got != nil || err != nil {
			t.Errorf("AptIndex(%s) = %v, %v; want nil, nil", r.Name, got, err)
		}
	}
}
