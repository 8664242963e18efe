package kiwi

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestParseDebootstrap(t *testing.T) {
	tests := []struct {
		name string
		args string
		ok   bool
		want debootstrapCall
	}{
		{"kiwi", "--keyring=/k.gpg --variant=minbase --include=ca-certificates --components=main bookworm /r http://m/debian/", true,
			debootstrapCall{options: []string{"--keyring=/k.gpg", "--variant=minbase", "--include=ca-certificates", "--components=main"},
				suite: "bookworm", target: "/r", mirror: "http://m/debian", keyring: "/k.gpg"}},
		{"script", "--no-check-gpg sid /r https://m/debian /s", true,
			debootstrapCall{options: []string{"--no-check-gpg"}, suite: "sid", target: "/r", mirror: "https://m/debian", script: "/s"}},
		{"separate value", "--variant minbase bookworm /r http://m/debian", false, debootstrapCall{}},
		{"unknown option", "--second-stage", false, debootstrapCall{}},
		{"no mirror", "bookworm /r", false, debootstrapCall{}},
		{"file mirror", "bookworm /r file:///srv/debian", false, debootstrapCall{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseDebootstrap(strings.Fields(tc.args))
			if ok != tc.ok {
				t.Fatalf("parseDebootstrap(%q) ok = %v, want %v", tc.args, ok, tc.ok)
			}
			if ok {
				if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(debootstrapCall{})); d != "" {
					t.Errorf("parseDebootstrap(%q) (-want +got):\n%s", tc.args, d)
				}
			}
		})
	}
}

// shimFixture runs the shim (this test binary under the name debootstrap)
// against a fake debootstrap that counts its runs, and a local mirror.
type shimFixture struct {
	t         *testing.T
	dir       string
	cache     string
	mirror    string
	counter   string
	mu        sync.Mutex
	inRelease string
	arch      string // the shim's IMSBUILD_DEBOOTSTRAP_ARCH
	epoch     string // the shim's SOURCE_DATE_EPOCH, as kiwi passes it on
}

func newShimFixture(t *testing.T) *shimFixture {
	testutil.RequireRoot(t) // the root keeps owners and device nodes
	testutil.RequireTool(t, "mksquashfs")
	testutil.RequireTool(t, "unsquashfs")
	f := &shimFixture{t: t, dir: t.TempDir(), inRelease: "Suite: bookworm\n"}
	f.cache = filepath.Join(f.dir, "cache")
	f.counter = filepath.Join(f.dir, "runs")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.URL.Path != "/debian/dists/bookworm/InRelease" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(f.inRelease))
	}))
	t.Cleanup(srv.Close)
	f.mirror = srv.URL + "/debian"
	// The fake debootstrap: what kiwi's root gets, with an owner, a mode,
	// a symlink and a device node; `fail` in the include list fails it.
	fake := `#!/bin/sh
echo "run $*" >> ` + f.counter + `
for a; do target=$prev; prev=$a; case "$a" in --include=*fail*) echo "E: no such package" >&2; exit 3;; esac; done
target=$(for a; do echo "$a"; done | tail -2 | head -1)
mkdir -p "$target/etc" "$target/usr/bin" "$target/dev"
echo 'VERSION_ID="12"' > "$target/etc/os-release"
echo "secret:*:$SOURCE_DATE_EPOCH" > "$target/etc/shadow" && chmod 640 "$target/etc/shadow" && chown 0:42 "$target/etc/shadow"
ln -sf ../usr/bin "$target/bin"
mknod "$target/dev/null" c 1 3
`
	if err := os.WriteFile(filepath.Join(f.dir, "real-debootstrap"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	shimDir := filepath.Join(f.dir, "shim")
	if err := os.Mkdir(shimDir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, filepath.Join(shimDir, shimName)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *shimFixture) setInRelease(s string) {
	f.mu.Lock()
	f.inRelease = s
	f.mu.Unlock()
}

// run calls the shim into a new target and returns the target, the
// shim's output and its exit code.
func (f *shimFixture) run(include string) (target, out string, code int) {
	f.t.Helper()
	target, err := os.MkdirTemp(f.dir, "root-")
	if err != nil {
		f.t.Fatal(err)
	}
	keyring := filepath.Join(f.dir, "keyring.gpg")
	os.WriteFile(keyring, []byte("keys"), 0o644)
	cmd := exec.Command(filepath.Join(f.dir, "shim", shimName), "--keyring="+keyring, "--variant=minbase",
		"--include="+include, "--components=main", "bookworm", target, f.mirror)
	cmd.Env = append(os.Environ(), envBootstrapCache+"="+f.cache, envDebootstrap+"="+filepath.Join(f.dir, "real-debootstrap"),
		envDebootstrapArch+"="+f.arch, "SOURCE_DATE_EPOCH="+f.epoch)
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatal(err)
	}
	return target, string(b), code
}

func (f *shimFixture) runs() int {
	b, _ := os.ReadFile(f.counter)
	return strings.Count(string(b), "run")
}

func (f *shimFixture) entries() []string {
	m, _ := filepath.Glob(filepath.Join(f.cache, "*.squashfs"))
	return m
}

// listing describes a tree: path, mode, owner, link target, mtime (whole
// seconds, as squashfs keeps them), content.
func listing(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `cd "$1" && find . -printf '%p %M %U:%G %l %T@\n' | sed 's/\.[0-9]*$//' | sort && cat etc/os-release etc/shadow`, "sh", root).CombinedOutput()
	if err != nil {
		t.Fatalf("list %s: %v\n%s", root, err, out)
	}
	return string(out)
}

func TestBootstrapShimCachesDebootstrap(t *testing.T) {
	f := newShimFixture(t)

	first, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 1 || len(f.entries()) != 1 {
		t.Fatalf("first run: exit %d, %d debootstrap runs, %d entries, want 0, 1, 1\n%s", code, f.runs(), len(f.entries()), out)
	}
	second, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 1 || !strings.Contains(out, "restored from the bootstrap cache") {
		t.Fatalf("second run: exit %d, %d debootstrap runs, want a restore\n%s", code, f.runs(), out)
	}
	if d := cmp.Diff(listing(t, first), listing(t, second)); d != "" {
		t.Errorf("restored root differs from debootstrap's (-debootstrap +restored):\n%s", d)
	}

	// A new Release file (the mirror moved on) or other options: debootstrap again.
	f.setInRelease("Suite: bookworm\nDate: later\n")
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 2 {
		t.Fatalf("after a Release change: exit %d, %d runs, want a debootstrap run\n%s", code, f.runs(), out)
	}
	if _, out, code := f.run("ca-certificates,less"); code != 0 || f.runs() != 3 || len(f.entries()) != 3 {
		t.Fatalf("other packages: exit %d, %d runs, %d entries, want 0, 3, 3\n%s", code, f.runs(), len(f.entries()), out)
	}

	// A failing debootstrap keeps its exit code, its message and no entry.
	if _, out, code := f.run("fail"); code != 3 || !strings.Contains(out, "no such package") || len(f.entries()) != 3 {
		t.Fatalf("failing debootstrap: exit %d, %d entries, want 3 and 3\n%s", code, len(f.entries()), out)
	}
}

// The build's SOURCE_DATE_EPOCH dates what debootstrap writes (shadow's
// last change field, the kept squashfs's mtimes): a build with another
// epoch bootstraps afresh instead of restoring a root dated otherwise.
func TestBootstrapShimEpoch(t *testing.T) {
	f := newShimFixture(t)
	f.epoch = "1700000000"
	first, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 1 {
		t.Fatalf("first run: exit %d, %d runs\n%s", code, f.runs(), out)
	}
	f.epoch = "0"
	other, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 2 || len(f.entries()) != 2 || strings.Contains(out, "restored") {
		t.Fatalf("another epoch: exit %d, %d runs, %d entries; want a second debootstrap kept apart\n%s", code, f.runs(), len(f.entries()), out)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "etc/shadow")); !strings.Contains(string(b), ":*:0") {
		t.Errorf("shadow of the epoch 0 root = %q, want its own epoch", b)
	}
	f.epoch = "1700000000"
	again, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 2 || !strings.Contains(out, "restored from the bootstrap cache") {
		t.Fatalf("first epoch again: exit %d, %d runs; want a restore\n%s", code, f.runs(), out)
	}
	if d := cmp.Diff(listing(t, first), listing(t, again)); d != "" {
		t.Errorf("restored root differs from debootstrap's (-debootstrap +restored):\n%s", d)
	}
}

// kiwi passes debootstrap no --arch for its --target-arch: the shim adds
// the target's, and keeps an arm64 root apart from an amd64 one.
func TestBootstrapShimArch(t *testing.T) {
	f := newShimFixture(t)
	lastRun := func() string {
		b, _ := os.ReadFile(f.counter)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return lines[len(lines)-1]
	}
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 1 || strings.Contains(lastRun(), "--arch") {
		t.Fatalf("host run: exit %d, %d runs, args %q; want one run without --arch\n%s", code, f.runs(), lastRun(), out)
	}
	f.arch = "arm64"
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 2 || len(f.entries()) != 2 || !strings.HasPrefix(lastRun(), "run --arch=arm64 ") {
		t.Fatalf("arm64 run: exit %d, %d runs, %d entries, args %q; want a second debootstrap with --arch=arm64 kept apart\n%s",
			code, f.runs(), len(f.entries()), lastRun(), out)
	}
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 2 || !strings.Contains(out, "restored from the bootstrap cache") {
		t.Fatalf("arm64 again: exit %d, %d runs; want a restore\n%s", code, f.runs(), out)
	}
	// Without a bootstrap cache the shim only adds --arch.
	f.cache = ""
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 3 || !strings.HasPrefix(lastRun(), "run --arch=arm64 ") || strings.Contains(out, "bootstrap cache") {
		t.Fatalf("arm64 without a cache: exit %d, %d runs, args %q\n%s", code, f.runs(), lastRun(), out)
	}
}

func TestWithArch(t *testing.T) {
	for _, tc := range []struct{ args, arch, want string }{
		{"--variant=minbase bookworm /r http://m", "arm64", "--arch=arm64 --variant=minbase bookworm /r http://m"},
		{"--arch=amd64 bookworm /r http://m", "arm64", "--arch=amd64 bookworm /r http://m"},
		{"bookworm /r http://m", "", "bookworm /r http://m"},
	} {
		if got := strings.Join(withArch(strings.Fields(tc.args), tc.arch), " "); got != tc.want {
			t.Errorf("withArch(%q, %q) = %q, want %q", tc.args, tc.arch, got, tc.want)
		}
	}
}

func TestBootstrapShimUnkeyableRunsDebootstrap(t *testing.T) {
	f := newShimFixture(t)
	f.mirror = "http://127.0.0.1:1/debian" // no Release file to key by
	if _, out, code := f.run("ca-certificates"); code != 0 || f.runs() != 1 || !strings.Contains(out, "bootstrap cache not used") {
		t.Fatalf("unreachable mirror: exit %d, %d runs, want debootstrap run uncached\n%s", code, f.runs(), out)
	}
	if _, _, code := f.run("ca-certificates"); code != 0 || f.runs() != 2 || len(f.entries()) != 0 {
		t.Fatalf("unreachable mirror again: exit %d, %d runs, %d entries; want 0, 2, 0", code, f.runs(), len(f.entries()))
	}
}

// kiwi bind mounts its shared package cache into the root before it calls
// debootstrap: the kept root must not carry the mount's content.
func TestBootstrapShimSkipsMounts(t *testing.T) {
	f := newShimFixture(t)
	shared := filepath.Join(f.dir, "shared")
	os.MkdirAll(shared, 0o755)
	os.WriteFile(filepath.Join(shared, "package.deb"), []byte("big"), 0o644)

	target, err := os.MkdirTemp(f.dir, "root-")
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(target, "var/cache/shared")
	os.MkdirAll(mp, 0o755)
	if err := unix.Mount(shared, mp, "", unix.MS_BIND, ""); err != nil {
		t.Skipf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mp, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(target, "kiwi_p2x8"), []byte("kiwi's apt.conf"), 0o600)
	b := &bootstrapCache{dir: f.cache}
	debootstrap := func() int {
		if err := os.WriteFile(filepath.Join(target, "x"), []byte("x"), 0o644); err != nil {
			t.Error(err)
			return 1
		}
		return 0
	}
	if code, err := b.run(debootstrapCall{suite: "bookworm", target: target}, strings.Repeat("1", 64), []byte("{}"), debootstrap); code != 0 || err != nil {
		t.Fatalf("run() = %d, %v", code, err)
	}
	out, err := exec.Command("unsquashfs", "-l", filepath.Join(f.cache, strings.Repeat("1", 64)+".squashfs")).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -l: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "/x\n") || strings.Contains(string(out), "package.deb") || strings.Contains(string(out), "kiwi_") {
		t.Errorf("kept root = %s, want x and neither the mounted package.deb nor kiwi's temporary file", out)
	}
}

// kiwi's per-run temporary files have random names: they must not change
// the key, or no bootstrap would ever be found again.
func TestTreeListingIgnoresKiwiTemporaries(t *testing.T) {
	var digests []string
	for _, name := range []string{"kiwi_a1b2", "kiwi_zz99", ""} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "dev/pts"), 0o755)
		os.Symlink("/proc/self/fd", filepath.Join(root, "dev/fd"))
		if name != "" {
			os.WriteFile(filepath.Join(root, name), []byte("apt.conf"), 0o600)
		}
		d, err := treeListing(t.Context(), root)
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("treeListing differs between kiwi temporaries kiwi_a1b2 and kiwi_zz99")
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dev/pts"), 0o755)
	if d, _ := treeListing(t.Context(), root); d == digests[2] {
		t.Errorf("treeListing did not change without dev/fd")
	}
}

// A damaged kept root is dropped and debootstrap runs instead.
func TestBootstrapShimDamagedEntry(t *testing.T) {
	f := newShimFixture(t)
	if _, out, code := f.run("ca-certificates"); code != 0 || len(f.entries()) != 1 {
		t.Fatalf("first run: exit %d, %d entries\n%s", code, len(f.entries()), out)
	}
	if err := os.WriteFile(f.entries()[0], []byte("not a squashfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	target, out, code := f.run("ca-certificates")
	if code != 0 || f.runs() != 2 || !strings.Contains(out, "running debootstrap") {
		t.Fatalf("damaged entry: exit %d, %d debootstrap runs, want a new run\n%s", code, f.runs(), out)
	}
	if _, err := os.Stat(filepath.Join(target, "etc/os-release")); err != nil {
		t.Errorf("root after the damaged entry: %v", err)
	}
	if _, _, code := f.run("ca-certificates"); code != 0 || f.runs() != 2 {
		t.Errorf("after the repair: exit %d, %d runs, want a restore", code, f.runs())
	}
}

func FuzzParseDebootstrap(f *testing.F) {
	f.Add("--keyring=/k --variant=minbase --include=a,b --components=main bookworm /r http://m/debian")
	f.Add("--no-check-gpg sid /r https://m/debian /usr/share/debootstrap/scripts/sid")
	f.Add("--arch amd64 bookworm /r http://m")
	f.Fuzz(func(t *testing.T, line string) {
		c, ok := parseDebootstrap(strings.Fields(line))
		if !ok {
			return
		}
		if c.suite == "" || c.target == "" || strings.HasPrefix(c.suite, "-") ||
			!strings.HasPrefix(c.mirror, "http://") && !strings.HasPrefix(c.mirror, "https://") {
			t.Fatalf("parseDebootstrap(%q) = %+v: accepted without suite, target or http(s) mirror", line, c)
		}
		for _, o := range c.options {
			if !strings.HasPrefix(o, "--") {
				t.Fatalf("parseDebootstrap(%q): option %q", line, o)
			}
		}
	})
}

// Two prepares bootstrapping the same suite at once: debootstrap runs once,
// the second waits for it and restores its root.
func TestBootstrapShimConcurrentSameKey(t *testing.T) {
	f := newShimFixture(t)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	outs := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, outs[i], codes[i] = f.run("ca-certificates")
		}()
	}
	wg.Wait()
	if codes[0] != 0 || codes[1] != 0 || f.runs() != 1 || len(f.entries()) != 1 {
		t.Fatalf("exits %v, %d debootstrap runs, %d entries; want 0 0, 1, 1\n%s\n%s", codes, f.runs(), len(f.entries()), outs[0], outs[1])
	}
	if restored := strings.Contains(outs[0], "restored") != strings.Contains(outs[1], "restored"); !restored {
		t.Errorf("want exactly one restore:\n%s\n%s", outs[0], outs[1])
	}
}

// TestBootstrapKeyIgnoresCacheSlot: kiwi passes a keyring inside whichever
// shared cache slot was free; the same bootstrap from slot 0 and slot 1 must
// have one key, and a keyring with other keys must not.
func TestBootstrapKeyIgnoresCacheSlot(t *testing.T) {
	real := testutil.RequireTool(t, "debootstrap") // key() hashes its scripts
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("Suite: bookworm\n"))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	keyOf := func(slot, keys string) string {
		t.Helper()
		keyring := filepath.Join(dir, slot, "keyring.gpg")
		target := filepath.Join(dir, slot, "root")
		if err := os.MkdirAll(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyring, []byte(keys), 0o644); err != nil {
			t.Fatal(err)
		}
		c, ok := parseDebootstrap([]string{"--keyring=" + keyring, "--variant=minbase", "--components=main",
			"bookworm", target, srv.URL + "/debian"})
		if !ok {
			t.Fatalf("parseDebootstrap: not keyable")
		}
		key, preimage, err := c.key(t.Context(), real)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(preimage), slot) {
			t.Errorf("preimage names the slot %s:\n%s", slot, preimage)
		}
		return key
	}
	k0, k1 := keyOf("cache-0", "keys"), keyOf("cache-1", "keys")
	if k0 != k1 {
		t.Errorf("key in cache-0 = %s, in cache-1 = %s, want equal", k0, k1)
	}
	if k2 := keyOf("cache-2", "other keys"); k2 == k0 {
		t.Errorf("key with another keyring = %s, want it to differ from %s", k2, k0)
	}
}

// The chroot shim drops kiwi's _target_arch% argument, which apt-get in a
// foreign root refuses, and passes everything else to the real chroot.
func TestChrootShim(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real-chroot")
	if err := os.WriteFile(real, []byte("#!/bin/sh\necho \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(dir, chrootShimName)
	if err := os.Symlink(self, shim); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(shim, "/root", "apt-get", "-q", "-y", "_target_arch%aarch64", "install", "bash")
	cmd.Env = append(os.Environ(), envChroot+"="+real)
	out, err := cmd.CombinedOutput()
	if got, want := string(out), "/root apt-get -q -y install bash\n"; err != nil || got != want {
		t.Errorf("chroot shim ran %q, %v; want %q", got, err, want)
	}
}
