package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/spec"
)

// prefetchDesc writes a description whose repository is only in its
// config.xml, and returns its directory.
func prefetchDesc(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	xml := `<image schemaversion="7.5" name="p"><preferences><packagemanager>apt</packagemanager></preferences>
<repository type="apt-deb" distribution="bookworm" components="main"><source path="http://deb.example/debian"/></repository>
</image>`
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLockFiles(t *testing.T) {
	sum := func(c string) string { return strings.Repeat(c, 64) }
	o := &Prepare{Repositories: []*spec.Repository{
		{Name: "local", URL: "http://127.0.0.1:8080/"},
		{Name: "sub", URL: "http://127.0.0.1:8080/sub"},
		{Name: "secure", URL: "https://secure.example/repo"},
	}}
	lock := &lockfile.Recipe{Packages: []lockfile.Package{
		{Name: "a", Version: "1", Arch: "all", SHA256: sum("a"), Path: "/pool/a_1_all.deb"},
		{Name: "b", Version: "1", Arch: "all", SHA256: sum("b"), Path: "/sub/pool/b_1_all.deb"},
		{Name: "c", Version: "1", Arch: "all", SHA256: sum("c"), Path: "/debian/pool/c_1%2b2_all.deb"},
		{Name: "d", Version: "1", Arch: "all", Path: "/pool/d_1_all.deb"},    // no sha256
		{Name: "e", Version: "1", Arch: "all", SHA256: sum("e")},             // no path
		{Name: "f", Version: "1", Arch: "all", SHA256: sum("f"), Path: "/x"}, // of the local repository too
	}}
	o2 := *o
	o2.Repositories = o.Repositories[2:] // only https: nothing but the description's
	for _, tc := range []struct {
		name string
		o    *Prepare
		want []pkgproxy.File
	}{
		{"declared and described", o, []pkgproxy.File{
			{URL: "http://127.0.0.1:8080/pool/a_1_all.deb", Digest: cache.Digest("sha256:" + sum("a"))},
			{URL: "http://127.0.0.1:8080/sub/pool/b_1_all.deb", Digest: cache.Digest("sha256:" + sum("b"))},
			{URL: "http://deb.example/debian/pool/c_1%2b2_all.deb", Digest: cache.Digest("sha256:" + sum("c"))},
			{URL: "http://127.0.0.1:8080/x", Digest: cache.Digest("sha256:" + sum("f"))},
		}},
		{"described only", &o2, []pkgproxy.File{
			{URL: "http://deb.example/debian/pool/c_1%2b2_all.deb", Digest: cache.Digest("sha256:" + sum("c"))},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lockFiles(lock, tc.o.repoBases(prefetchDesc(t)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("lockFiles() (-want +got):\n%s", diff)
			}
		})
	}
}

// The list comes from the lock entry, else the last prepare's package
// list, else apt-get's resolution.
func TestPrefetchListSources(t *testing.T) {
	sum := strings.Repeat("a", 64)
	pkg := func(name string) *lockfile.Recipe {
		return &lockfile.Recipe{Packages: []lockfile.Package{{Name: name, Version: "1", Arch: "all", SHA256: sum, Path: "/debian/pool/" + name + "_1_all.deb"}}}
	}
	desc := prefetchDesc(t)
	previous := func(context.Context) *lockfile.Recipe { return pkg("previous") }
	for _, tc := range []struct {
		name       string
		o          *Prepare
		wantURL    string
		wantSource string
	}{
		{"lock", &Prepare{Lock: pkg("locked"), Previous: previous}, "http://deb.example/debian/pool/locked_1_all.deb", "the lock"},
		{"previous", &Prepare{Previous: previous}, "http://deb.example/debian/pool/previous_1_all.deb", "the last prepare"},
		// No signing key: apt-get is not even run.
		{"resolve", &Prepare{Previous: func(context.Context) *lockfile.Recipe { return nil }}, "", "no signing key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Recipe = &spec.Recipe{Name: "r"}
			var files []pkgproxy.File
			source, err := tc.o.prefetchList(t.Context(), desc, "", t.TempDir(), func(f []pkgproxy.File) { files = append(files, f...) })
			if err != nil {
				source = err.Error()
			}
			if !strings.Contains(source, tc.wantSource) {
				t.Errorf("prefetchList() source %q, want %q", source, tc.wantSource)
			}
			var got string
			if len(files) > 0 {
				got = files[0].URL
			}
			if got != tc.wantURL || len(files) > 1 {
				t.Errorf("prefetchList() = %v, want %q", files, tc.wantURL)
			}
		})
	}
}
