package steps

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/lockfile"
	"github.com/imsbuild/imsbuild/spec"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

const dpkgStatus = `Package: served
Status: install ok installed
Version: 1.0-1
Architecture: amd64

Package: kept
Status: install ok installed
Version: 2:3.1-4
Architecture: all

Package: bootstrapped
Status: install ok installed
Version: 5
Architecture: amd64

Package: removed
Status: deinstall ok config-files
Version: 9
Architecture: amd64
`

// resolvePackages lists what the root's dpkg database holds, with the
// digest and path of each file the proxy session served, else the digest
// of the .deb apt kept in kiwi's shared cache, else neither.
func TestResolvePackages(t *testing.T) {
	root, shared := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), dpkgStatus)
	kept := "kept package file"
	writeFile(t, filepath.Join(shared, "apt-get/archives/kept_2%3a3.1-4_all.deb"), kept)
	writeFile(t, filepath.Join(shared, "apt-get/archives/served_1.0-1_amd64.deb"), "stale copy, not what was served")
	rec := newPackageRecorder(nil)
	servedSum := cache.Digest("sha256:" + strings.Repeat("ab", 32))
	h := rec.hooks()
	if h.Check != nil {
		t.Error("a recorder without a lock checks packages")
	}
	h.Served("http://mirror.example/debian/pool/main/s/served/served_1.0-1_amd64.deb", servedSum, 10)
	h.Served("http://mirror.example/debian/pool/main/o/other/other_1_amd64.deb", servedSum, 10) // served, not installed
	repos := map[string]string{"debian": "sha256:" + strings.Repeat("cd", 32)}

	indexSum := strings.Repeat("ef", 32)
	var asked []string
	index := func(_ context.Context, arches []string, want func(string) bool) map[string]kiwi.IndexEntry {
		asked = arches
		out := map[string]kiwi.IndexEntry{}
		for _, k := range []string{kiwi.IndexKey("bootstrapped", "5", "amd64"), kiwi.IndexKey("bootstrapped", "6", "amd64"), kiwi.IndexKey("served", "1.0-1", "amd64")} {
			if want(k) {
				out[k] = kiwi.IndexEntry{Path: "/debian/pool/" + strings.ReplaceAll(k, " ", "_"), SHA256: indexSum}
			}
		}
		return out
	}
	got, err := resolvePackages(t.Context(), root, shared, rec, repos, index)
	if err != nil {
		t.Fatalf("resolvePackages() = %v", err)
	}
	want := &lockfile.Recipe{Repositories: repos, Packages: []lockfile.Package{
		{Name: "bootstrapped", Version: "5", Arch: "amd64", SHA256: indexSum, Path: "/debian/pool/bootstrapped_5_amd64"},
		{Name: "kept", Version: "2:3.1-4", Arch: "all", SHA256: testutil.SHA256Hex([]byte(kept))},
		{Name: "served", Version: "1.0-1", Arch: "amd64", SHA256: servedSum.Hex(), Path: "/debian/pool/main/s/served/served_1.0-1_amd64.deb"},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("resolvePackages() (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"amd64"}, asked); d != "" {
		t.Errorf("index asked for arches (-want +got):\n%s", d)
	}
	// An index entry the lock cannot hold is ignored, not fatal.
	odd, err := resolvePackages(t.Context(), root, shared, rec, repos, func(context.Context, []string, func(string) bool) map[string]kiwi.IndexEntry {
		return map[string]kiwi.IndexEntry{kiwi.IndexKey("bootstrapped", "5", "amd64"): {Path: "/a b", SHA256: indexSum}}
	})
	if err != nil || odd.Packages[0] != (lockfile.Package{Name: "bootstrapped", Version: "5", Arch: "amd64"}) {
		t.Errorf("resolvePackages() with an odd index entry = %v, %v", odd, err)
	}
	// Without an index, a package only debootstrap installed has no file.
	bare, err := resolvePackages(t.Context(), root, shared, rec, repos, nil)
	if err != nil || bare.Packages[0] != (lockfile.Package{Name: "bootstrapped", Version: "5", Arch: "amd64"}) {
		t.Errorf("resolvePackages() without index = %v, %v", bare, err)
	}

	// What it stores reads back as the same lock entry.
	c, err := local.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := storePackages(t.Context(), c, got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ReadPackages(t.Context(), c, &cache.ActionResult{Outputs: map[string]cache.Output{PackagesOutput: out}})
	if err != nil {
		t.Fatalf("ReadPackages() = %v", err)
	}
	if d := cmp.Diff(got, back); d != "" {
		t.Errorf("ReadPackages(storePackages(x)) (-want +got):\n%s", d)
	}
	if _, err := ReadPackages(t.Context(), c, &cache.ActionResult{}); err == nil {
		t.Error("ReadPackages of a result without a package list succeeded")
	}
	bad, _, err := c.Put(t.Context(), strings.NewReader(`{"packages":[{"name":"a b","version":"1","arch":"all"}]}`), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPackages(t.Context(), c, &cache.ActionResult{Outputs: map[string]cache.Output{PackagesOutput: {Digest: bad, Size: 10}}}); err == nil {
		t.Error("ReadPackages of an invalid package list succeeded")
	}
}

// Under a lock, the recorder's Check refuses what the lock lacks and
// remembers each refusal once for the prepare's error.
func TestPackageRecorderCheck(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	lock := &lockfile.Recipe{Packages: []lockfile.Package{{Name: "foo", Version: "1.0-1", Arch: "all", SHA256: sum}}}
	rec := newPackageRecorder(lock)
	h := rec.hooks()
	ok := "http://m/pool/foo_1.0-1_all.deb"
	if err := h.Check(ok, ""); err != nil {
		t.Errorf("Check(locked) = %v", err)
	}
	if err := h.Check(ok, cache.Digest("sha256:"+sum)); err != nil {
		t.Errorf("Check(locked, digest) = %v", err)
	}
	newer := "http://m/pool/foo_1.1-1_all.deb"
	for range 3 { // apt retries
		if err := h.Check(newer, ""); err == nil {
			t.Error("Check(unlocked version) = nil")
		}
	}
	if err := h.Check(ok, cache.Digest("sha256:"+strings.Repeat("00", 32))); err == nil {
		t.Error("Check(locked version, other digest) = nil")
	}
	want := []string{
		"package foo: locked 1.0-1 (sha256 abababababab…), repository now resolves 1.1-1 (/pool/foo_1.1-1_all.deb)",
		"package foo 1.0-1: locked sha256 " + sum + ", repository now serves sha256 " + strings.Repeat("00", 32) + " (/pool/foo_1.0-1_all.deb)",
	}
	if d := cmp.Diff(want, rec.refusals()); d != "" {
		t.Errorf("refusals() (-want +got):\n%s", d)
	}
	err := &LockMismatchError{Recipe: "node", Lines: rec.refusals()}
	if !errors.Is(err, ErrLockMismatch) || !strings.Contains(err.Error(), "recipe node: the packages differ from the lock (imsbuild lock --update refreshes the lock):\n  package foo: locked 1.0-1") {
		t.Errorf("LockMismatchError = %q", err)
	}
}

// Locked, the recipe's lock entry enters the prepare key, and a change of
// it changes the key; a recipe the lock lacks cannot be keyed.
func TestPrepareKeyLocked(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "config.xml"), "<image/>")
	lock := &lockfile.Recipe{Packages: []lockfile.Package{{Name: "foo", Version: "1.0", Arch: "all"}}}
	op := func(l *lockfile.Recipe, locked bool) *Prepare {
		return &Prepare{
			Recipe:       &spec.Recipe{Name: "node", Source: src},
			RecipeSource: func(context.Context, *spec.Recipe) (string, error) { return src, nil },
			Lock:         l,
			Locked:       locked,
		}
	}
	env := KeyEnv{
		TextDigest: func(s string) string { return s },
		ToolVersion: func(context.Context, string, func(context.Context) (string, error)) (string, error) {
			return "kiwi-ng 10", nil
		},
	}
	key := func(o *Prepare) *Key {
		t.Helper()
		k, err := o.Key(t.Context(), env)
		if err != nil {
			t.Fatalf("Key() = %v", err)
		}
		return k
	}
	if k := key(op(lock, false)); k.Inputs["lock"] != "" {
		t.Errorf("unlocked key has a lock input %q", k.Inputs["lock"])
	}
	k := key(op(lock, true))
	if k.Inputs["lock"] != lock.Digest() {
		t.Errorf("locked key's lock input = %q, want %q", k.Inputs["lock"], lock.Digest())
	}
	newer := &lockfile.Recipe{Packages: []lockfile.Package{{Name: "foo", Version: "1.1", Arch: "all"}}}
	if key(op(newer, true)).Inputs["lock"] == k.Inputs["lock"] {
		t.Error("another lock entry gives the same key input")
	}
	if _, err := op(nil, true).Key(t.Context(), env); err == nil || !strings.Contains(err.Error(), "recipe node is not in the lock file") {
		t.Errorf("Key() of a locked recipe without entry = %v", err)
	}
}
