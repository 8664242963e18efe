package engine

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/lockfile"
)

// overlayKiwi wraps the fake kiwi so that it also copies the description's
// root/ overlay into the image root, as kiwi does: a test's recipe can
// then hold a dpkg status file.
func overlayKiwi(t *testing.T) (runs func() int) {
	t.Helper()
	runs = testutil.FakeKiwi(t)
	inner, err := exec.LookPath("kiwi-ng")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	script := `#!/bin/sh
for a in "$@"; do
  case "$prev" in --root) root=$a;; --description) desc=$a;; esac
  prev=$a
done
` + inner + ` "$@" || exit $?
[ "$1" = --version ] || [ ! -d "$desc/root" ] || cp -a "$desc/root/." "$root/"
`
	if err := os.WriteFile(filepath.Join(bin, "kiwi-ng"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return runs
}

func setDpkgStatus(t *testing.T, f *fixture, version string) {
	t.Helper()
	p := filepath.Join(f.cfg.Recipes["node"].Source, "root/var/lib/dpkg/status")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Package: foo\nStatus: install ok installed\nVersion: " + version + "\nArchitecture: all\n"
	if err := os.WriteFile(p, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Resolve gives each recipe's package list, from a cached prepare without
// kiwi; Locked puts the lock entry into the prepare key and fails, caching
// nothing, when the prepare resolves other packages.
func TestResolveAndLocked(t *testing.T) {
	runs := overlayKiwi(t)
	srv, _ := repoServer(t)
	f := kiwiFixture(t, srv.URL+"/debian")
	setDpkgStatus(t, f, "1.0")
	engine := func(opts Options) *Engine {
		t.Helper()
		opts.WorkDir = filepath.Join(f.cache.Dir(), "work", "test")
		e, err := New(f.cfg, f.cache, f.cache.Actions(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	got, err := engine(Options{}).Resolve(t.Context(), nil)
	if err != nil {
		t.Fatalf("Resolve() = %v", err)
	}
	node := got["node"]
	want := []lockfile.Package{{Name: "foo", Version: "1.0", Arch: "all"}}
	if node == nil || len(node.Packages) != 1 || node.Packages[0] != want[0] || !strings.HasPrefix(node.Repositories["debian"], "sha256:") {
		t.Fatalf("Resolve() = %+v, want foo 1.0 and the debian repository's digest", node)
	}
	if runs() != 1 {
		t.Fatalf("kiwi runs = %d, want 1", runs())
	}
	if again, err := engine(Options{}).Resolve(t.Context(), []string{"node"}); err != nil || again["node"].Digest() != node.Digest() || runs() != 1 {
		t.Fatalf("second Resolve() = %v, %v with %d kiwi runs; want the cached list, 1 run", again, err, runs())
	}
	var unknown *UnknownTargetError
	if _, err := engine(Options{}).Resolve(t.Context(), []string{"nope"}); !errors.As(err, &unknown) {
		t.Errorf("Resolve(nope) = %v, want an UnknownTargetError", err)
	}

	lock := &lockfile.File{Version: lockfile.Version, Recipes: map[string]*lockfile.Recipe{"node": node}}
	// The lock in the key: a locked build runs kiwi once more, then hits.
	for i, wantRuns := range []int{2, 2} {
		if err := engine(Options{Lock: lock, Locked: true}).Build(t.Context(), []string{"image.base"}); err != nil || runs() != wantRuns {
			t.Fatalf("locked build %d = %v with %d kiwi runs, want %d", i, err, runs(), wantRuns)
		}
	}
	// Not locked, the lock is no key input: the first prepare is cached.
	if err := engine(Options{Lock: lock}).Build(t.Context(), []string{"image.base"}); err != nil || runs() != 2 {
		t.Fatalf("unlocked build with a lock = %v with %d kiwi runs, want cached", err, runs())
	}

	// The recipe now installs foo 2.0: the locked build fails naming both
	// versions and caches nothing, so the next one runs kiwi again.
	setDpkgStatus(t, f, "2.0")
	for i := range 2 {
		err := engine(Options{Lock: lock, Locked: true}).Build(t.Context(), []string{"image.base"})
		if !errors.Is(err, steps.ErrLockMismatch) || !strings.Contains(err.Error(), "package foo: locked 1.0, repository now resolves 2.0") {
			t.Fatalf("locked build %d after 2.0 = %v, want a lock mismatch naming foo 1.0 and 2.0", i, err)
		}
		if runs() != 3+i {
			t.Errorf("kiwi runs = %d, want %d: a failed locked prepare was cached", runs(), 3+i)
		}
	}
	// Unlocked, the difference only warns.
	rec := &recorder{}
	e := engine(Options{Lock: lock, Events: rec.add})
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("unlocked build after 2.0 = %v", err)
	}
	warned := false
	for _, ev := range rec.events {
		warned = warned || strings.Contains(ev.Line, "warning: recipe node resolves other packages than imsbuild.lock.json")
	}
	if !warned {
		t.Error("an unlocked build that differs from the lock did not warn")
	}
	// A recipe the lock lacks cannot build locked.
	empty := &lockfile.File{Version: lockfile.Version}
	if err := engine(Options{Lock: empty, Locked: true}).Build(t.Context(), []string{"image.base"}); err == nil || !strings.Contains(err.Error(), "recipe node is not in the lock file") {
		t.Errorf("locked build without an entry = %v", err)
	}
}
