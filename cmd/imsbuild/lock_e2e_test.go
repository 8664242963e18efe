package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/lockfile"
)

// aptRepo is a local apt repository over 127.0.0.1 http whose packages can
// be republished while it serves.
type aptRepo struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
}

// publish adds .deb files to the pool and makes the index list exactly
// them (stanzas: name, version, deb).
func (r *aptRepo) publish(t *testing.T, pkgs ...testDeb) {
	t.Helper()
	var idx strings.Builder
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range pkgs {
		path := fmt.Sprintf("pool/main/%s_%s_all.deb", p.name, p.version)
		r.files["/"+path] = p.deb
		sum := sha256.Sum256(p.deb)
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: imsbuild <imsbuild@example.invalid>\nFilename: %s\nSize: %d\nSHA256: %s\nDescription: imsbuild lock test package\n\n",
			p.name, p.version, path, len(p.deb), hex.EncodeToString(sum[:]))
	}
	packages := idx.String()
	psum := sha256.Sum256([]byte(packages))
	var rel strings.Builder
	fmt.Fprintf(&rel, "Origin: imsbuild\nLabel: imsbuild\nSuite: stable\nCodename: stable\nDate: %s\nArchitectures: amd64 all\nComponents: main\nSHA256:\n",
		time.Now().UTC().Format(time.RFC1123))
	for _, arch := range []string{"amd64", "all"} {
		fmt.Fprintf(&rel, " %s %d main/binary-%s/Packages\n", hex.EncodeToString(psum[:]), len(packages), arch)
		r.files["/dists/stable/main/binary-"+arch+"/Packages"] = []byte(packages)
	}
	r.files["/dists/stable/Release"] = []byte(rel.String())
}

func newAptRepo(t *testing.T) *aptRepo {
	r := &aptRepo{files: map[string][]byte{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		data, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, req.URL.Path, time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(r.Close)
	return r
}

type testDeb struct {
	name, version string
	deb           []byte
}

// buildDeb makes package name at version with dpkg-deb, other bytes in
// every run (so that apt downloads it instead of reusing the file an
// earlier run left in kiwi's shared package cache). It ships a kernel and
// an initrd stand-in in /boot, which is all a recipe image needs to pack.
func buildDeb(t *testing.T, name, version string) testDeb {
	t.Helper()
	dpkgDeb := testutil.RequireTool(t, "dpkg-deb")
	root := filepath.Join(t.TempDir(), name+"-"+version)
	files := map[string]string{
		"DEBIAN/control":                 fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: imsbuild <imsbuild@example.invalid>\nDescription: imsbuild lock test package\n", name, version),
		"boot/vmlinuz-0.0.0-locktest":    "not a kernel " + version + "\n",
		"boot/initrd.img-0.0.0-locktest": "not an initrd " + version + "\n",
		"usr/share/" + name + "/version": version + "\n",
		"usr/share/" + name + "/run":     fmt.Sprintf("%d\n", time.Now().UnixNano()),
	}
	testutil.WriteFiles(t, root, files, 0o644)
	out := root + ".deb"
	if b, err := exec.CommandContext(t.Context(), dpkgDeb, "--root-owner-group", "-Zgzip", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	deb, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return testDeb{name, version, deb}
}

const lockTestRecipe = `<?xml version="1.0" encoding="utf-8"?>
<image schemaversion="7.5" name="locktest">
    <description type="system">
        <author>imsbuild</author>
        <contact>imsbuild@example.com</contact>
        <specification>imsbuild lock test: Debian's bootstrap and one package of a local repository</specification>
    </description>
    <preferences>
        <version>1.0.0</version>
        <packagemanager>apt</packagemanager>
        <type image="tbz"/>
    </preferences>
    <repository type="apt-deb" alias="debian" distribution="bookworm" components="main" repository_gpgcheck="true" use_for_bootstrap="true">
        <source path="http://deb.debian.org/debian">
            <signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/>
        </source>
    </repository>
    <repository type="apt-deb" alias="local" distribution="stable" components="main" repository_gpgcheck="false">
        <source path="{{ repo }}"/>
    </repository>
    <packages type="image">
        <package name="imsbuild-locktest"/>
    </packages>
    <packages type="bootstrap">
        <package name="debian-archive-keyring"/>
        <package name="ca-certificates"/>
    </packages>
</image>
`

// TestLockEndToEnd is issue 13's lock test with the real kiwi-ng: a lock
// made against a local apt repository holding imsbuild-locktest 1.0; 2.0
// published; build --locked fails naming the package and both versions,
// with nothing cached or published; lock --update passes and locks 2.0;
// build --locked then builds. Three kiwi prepares (their debootstrap from
// the bootstrap cache after the first): a few minutes.
func TestLockEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng prepares: minutes")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "dpkg-deb"} {
		testutil.RequireTool(t, tool)
	}
	const pkg = "imsbuild-locktest"
	v1, v2 := buildDeb(t, pkg, "1.0"), buildDeb(t, pkg, "2.0")
	repo := newAptRepo(t)
	repo.publish(t, v1)

	dir := filepath.Join(t.TempDir(), "locktest")
	if err := os.MkdirAll(filepath.Join(dir, "recipe"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "recipe/config.xml"), []byte(lockTestRecipe), 0o644); err != nil {
		t.Fatal(err)
	}
	build := fmt.Sprintf(`repository "local" {
  type         = "apt"
  url          = %q
  distribution = "stable"
}

recipe "node" {
  source       = "./recipe"
  template     = { repo = %q }
  repositories = [repository.local]
}

image "base" {
  recipe = recipe.node
}

publish "dir" "local" {
  images = [image.base]
  path   = "out"
}
`, repo.URL, repo.URL)
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(build), 0o644); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(dir, lockfile.Name)
	readLocked := func() lockfile.Package {
		t.Helper()
		data, err := os.ReadFile(lockPath)
		if err != nil {
			t.Fatal(err)
		}
		lf, err := lockfile.Parse(data)
		if err != nil {
			t.Fatalf("lockfile.Parse(%s) = %v\n%s", lockPath, err, data)
		}
		r := lf.Recipes["node"]
		if r == nil {
			t.Fatalf("no recipe node in the lock:\n%s", data)
		}
		if !strings.HasPrefix(r.Repositories["local"], "sha256:") {
			t.Errorf("lock: repository local digest = %q, want sha256:…", r.Repositories["local"])
		}
		for _, p := range r.Packages {
			if p.Name == pkg {
				return p
			}
		}
		t.Fatalf("no %s in the lock:\n%s", pkg, data)
		return lockfile.Package{}
	}
	sumOf := func(d testDeb) string { s := sha256.Sum256(d.deb); return hex.EncodeToString(s[:]) }

	start := time.Now()
	r := imsbuild(t, dir, "lock", ".")
	if r.code != 0 {
		t.Fatalf("lock: exit %d\n%s\n%s", r.code, tail(r.stdout, 40), r.stderr)
	}
	t.Logf("lock: %v", time.Since(start))
	got := readLocked()
	want := lockfile.Package{Name: pkg, Version: "1.0", Arch: "all", SHA256: sumOf(v1), Path: "/pool/main/" + pkg + "_1.0_all.deb"}
	if got != want {
		t.Fatalf("locked %+v, want %+v", got, want)
	}
	first, _ := os.ReadFile(lockPath)

	// 2.0 is published: the locked build must not take it.
	repo.publish(t, v1, v2)
	start = time.Now()
	r = imsbuild(t, dir, "build", "--locked", ".")
	t.Logf("build --locked against 2.0: %v", time.Since(start))
	wantLine := "package " + pkg + ": locked 1.0 (sha256 " + sumOf(v1)[:12] + "…), repository now resolves 2.0"
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, wantLine) {
		t.Fatalf("build --locked after 2.0: exit %d, want 1 with %q\n%s\n%s", r.code, wantLine, tail(r.stdout, 40), r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("a failed --locked build published something")
	}
	if now, _ := os.ReadFile(lockPath); !bytes.Equal(now, first) {
		t.Error("build --locked changed the lock file")
	}
	// Without --update, lock keeps the entry it has.
	if r = imsbuild(t, dir, "lock", "."); r.code != 0 || readLocked().Version != "1.0" {
		t.Fatalf("lock without --update: exit %d, locked %s; want 1.0 kept\n%s", r.code, readLocked().Version, tail(r.stdout, 20))
	}

	start = time.Now()
	r = imsbuild(t, dir, "lock", "--update", ".")
	t.Logf("lock --update: %v", time.Since(start))
	if r.code != 0 || !strings.Contains(r.stdout, "repository now resolves 2.0") {
		t.Fatalf("lock --update: exit %d, want 0 naming the change\n%s\n%s", r.code, tail(r.stdout, 40), r.stderr)
	}
	want = lockfile.Package{Name: pkg, Version: "2.0", Arch: "all", SHA256: sumOf(v2), Path: "/pool/main/" + pkg + "_2.0_all.deb"}
	if got := readLocked(); got != want {
		t.Fatalf("after lock --update: locked %+v, want %+v", got, want)
	}

	start = time.Now()
	r = imsbuild(t, dir, "build", "--locked", "--json", ".")
	t.Logf("build --locked against 2.0 locked: %v", time.Since(start))
	wantEv := map[string]string{"image.base/prepare": "done", "image.base": "done", "publish.dir.local": "done"}
	if ev := events(t, r.stdout); r.code != 0 || !equal(ev, wantEv) {
		t.Fatalf("build --locked after lock --update: exit %d, %v; want %v\n%s\n%s", r.code, ev, wantEv, tail(r.stdout, 40), r.stderr)
	}
	rootfs, _ := filepath.Glob(filepath.Join(dir, "out/boot-images/*/rootfs"))
	if len(rootfs) != 1 {
		t.Fatalf("published rootfs: %v, want one", rootfs)
	}
	if out, err := exec.Command("unsquashfs", "-cat", rootfs[0], "usr/share/"+pkg+"/version").Output(); err != nil || string(out) != "2.0\n" {
		t.Errorf("the image's %s version = %q, %v; want 2.0", pkg, out, err)
	}
}

// The lock command's bookkeeping, without kiwi: a lock entry of a recipe
// the build no longer declares is removed; a hostile lock file is a usage
// error; --locked without a lock file is one too.
func TestLockCommandWithoutKiwi(t *testing.T) {
	dir := buildDir(t, "locals { x = 1 }\n")
	lockPath := filepath.Join(dir, lockfile.Name)
	stale := `{"version": 1, "recipes": {"gone": {"repositories": {}, "packages": [{"name": "foo", "version": "1", "arch": "all"}]}}}`
	if err := os.WriteFile(lockPath, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	r := imsbuild(t, dir, "lock", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "recipe gone: removed (no longer declared)") {
		t.Fatalf("lock with a stale entry: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	b, _ := os.ReadFile(lockPath)
	if want := "{\n  \"version\": 1,\n  \"recipes\": {}\n}\n"; string(b) != want {
		t.Errorf("lock file = %q, want %q", b, want)
	}
	if r = imsbuild(t, dir, "lock", "."); r.code != 0 || !strings.Contains(r.stdout, "is up to date") {
		t.Errorf("second lock: exit %d, want up to date\n%s", r.code, r.stdout)
	}
	if r = imsbuild(t, dir, "lock", ".", "nope"); r.code != 2 || !strings.Contains(r.stderr, `unknown target "nope"`) {
		t.Errorf("lock of an unknown recipe: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}

	hostile := `{"version": 1, "recipes": {"node": {"repositories": {}, "packages": [{"name": "foo\u001b[2J", "version": "1", "arch": "all"}]}}}`
	if err := os.WriteFile(lockPath, []byte(hostile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"lock", "."}, {"build", "--locked", "."}, {"plan", "."}} {
		r = imsbuild(t, dir, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "imsbuild.lock.json: lock file: recipe node: package 1: name") || strings.Contains(r.stderr, "\x1b") {
			t.Errorf("%v with a hostile lock: exit %d, want 2 naming the package, escaped\n%q", args, r.code, r.stderr)
		}
	}
	os.Remove(lockPath)
	if r = imsbuild(t, dir, "build", "--locked", "."); r.code != 2 || !strings.Contains(r.stderr, "--locked: no imsbuild.lock.json in .") {
		t.Errorf("build --locked without a lock: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
