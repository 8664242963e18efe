package kiwi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// rpmIndex reads a repository made by the real createrepo_c: the package
// file's sha256 and path, keyed by name, epoch:version-release and arch.
func TestRPMIndex(t *testing.T) {
	testutil.RequireTool(t, "createrepo_c")
	dir := filepath.Join(t.TempDir(), "repo")
	if err := writeCARepo(dir, []string{fixedCA(t)}); err != nil {
		t.Fatal(err)
	}
	rpms, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("rpms in the repository: %v", rpms)
	}
	data, err := os.ReadFile(rpms[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	file := filepath.Base(rpms[0])
	// name-version-release.noarch.rpm
	nvr := strings.TrimSuffix(file, ".noarch.rpm")
	release := nvr[strings.LastIndexByte(nvr, '-')+1:]
	key := IndexKey(caRPMName, RPMVersion("0", caRPMVersion, release), "noarch")

	srv := httptest.NewServer(http.StripPrefix("/sles", http.FileServer(http.Dir(dir))))
	defer srv.Close()
	repo := &spec.Repository{Name: "site", Type: "rpm-md", URL: srv.URL + "/sles/"}
	got, err := Index(t.Context(), srv.Client(), repo, nil, func(k string) bool { return k == key })
	if err != nil {
		t.Fatalf("Index() = %v", err)
	}
	want := IndexEntry{Path: "/sles/" + file, SHA256: hex.EncodeToString(sum[:])}
	if len(got) != 1 || got[key] != want {
		t.Fatalf("Index() = %v, want %s: %+v", got, key, want)
	}
	if got, err := Index(t.Context(), srv.Client(), repo, nil, func(string) bool { return false }); err != nil || len(got) != 0 {
		t.Errorf("Index(nothing wanted) = %v, %v", got, err)
	}

	// A primary that is not the one repomd.xml lists is refused.
	primary, _ := filepath.Glob(filepath.Join(dir, "repodata/*primary.xml*"))
	if len(primary) != 1 {
		t.Fatalf("primary: %v", primary)
	}
	b, _ := os.ReadFile(primary[0])
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(primary[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Index(t.Context(), srv.Client(), repo, nil, func(string) bool { return true }); err == nil {
		t.Error("Index() of a changed primary = nil error")
	}
}

func TestRPMVersion(t *testing.T) {
	for _, tc := range [][4]string{{"", "1.0", "1", "1.0-1"}, {"0", "1.0", "1", "1.0-1"}, {"2", "1.0", "1.el9", "2:1.0-1.el9"}} {
		if got := RPMVersion(tc[0], tc[1], tc[2]); got != tc[3] {
			t.Errorf("RPMVersion(%q, %q, %q) = %q, want %q", tc[0], tc[1], tc[2], got, tc[3])
		}
	}
}
