package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// A kiwi prepare with the package cache prefetches from the package list
// of the last prepare of its image once there is one; before, it resolves
// the description (which this one, without a signing key, cannot).
func TestKiwiPrefetchSources(t *testing.T) {
	testutil.FakeKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	opts := Options{PackageStore: f.cache, PackageActions: f.cache.Actions(), LogDir: t.TempDir()}
	prepareLog := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(opts.LogDir, "image.base.prepare.log"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.lastPackages(t.Context(), "image.base/prepare"); got != nil {
		t.Fatalf("lastPackages() before any build = %+v, want nil", got)
	}
	if _, err := f.build(t, t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if log := prepareLog(); !strings.Contains(log, "package prefetch: nothing to fetch (resolve packages: repository") || !strings.Contains(log, "no signing key") {
		t.Errorf("first prepare's log:\n%s\nwant the resolution refused for want of a signing key", log)
	}
	if got := e.lastPackages(t.Context(), "image.base/prepare"); got == nil {
		t.Fatal("lastPackages() after a build = nil, want its package list")
	}

	// Another recipe of the same image: its last prepare's list.
	f.cfg.Recipes["node"].Template["release"] = "trixie"
	if _, err := f.build(t, t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if log := prepareLog(); !strings.Contains(log, "package prefetch: nothing to fetch (the last prepare)") {
		t.Errorf("second prepare's log:\n%s\nwant the last prepare's (empty) list", log)
	}

	// --no-prefetch: no word of it.
	f.cfg.Recipes["node"].Template["release"] = "forky"
	opts.NoPrefetch = true
	if _, err := f.build(t, t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if log := prepareLog(); strings.Contains(log, "package prefetch") {
		t.Errorf("prepare log with NoPrefetch:\n%s", log)
	}
}
