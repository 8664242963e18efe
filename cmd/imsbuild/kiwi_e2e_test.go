package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestDebianNodeEndToEnd builds examples/debian-node with the real kiwi-ng
// from the Debian mirror, checks the published image, rebuilds from the
// cache, rebuilds only the customized image after a script change, and
// boots the image in qemu to a login prompt.
func TestDebianNodeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng build: minutes")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap", "qemu-system-x86_64"} {
		testutil.RequireTool(t, tool)
	}
	dir := copyExample(t, "debian-node")

	start := time.Now()
	r := imsbuild(t, dir, "build", "--json", ".")
	want := map[string]string{"image.base/prepare": "done", "image.base": "done", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("cold build exit %d = %v, want %v\n%s\n%s", r.code, got, want, tail(r.stdout, 40), r.stderr)
	}
	t.Logf("cold build: %v", time.Since(start))

	base := publishedImage(t, dir, "debian-node-bookworm")
	osRelease, err := exec.Command("unsquashfs", "-cat", filepath.Join(base, "rootfs"), "usr/lib/os-release").Output() // /etc/os-release links here
	if err != nil || !strings.Contains(string(osRelease), `VERSION_ID="12"`) {
		t.Fatalf("rootfs os-release = %q, %v; want Debian 12", osRelease, err)
	}
	reproduce(t, dir)

	start = time.Now()
	r = imsbuild(t, dir, "build", "--json", ".")
	want = map[string]string{"image.base/prepare": "cached", "image.base": "cached", "image.compute": "cached", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("warm build exit %d = %v, want %v", r.code, got, want)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("warm build took %v, want about a second", d)
	}

	script := filepath.Join(dir, "scripts/compute.sh")
	b, _ := os.ReadFile(script)
	if err := os.WriteFile(script, append(b, []byte("echo changed > /etc/changed\n")...), 0o755); err != nil {
		t.Fatal(err)
	}
	r = imsbuild(t, dir, "build", "--json", ".")
	want = map[string]string{"image.base/prepare": "cached", "image.base": "cached", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("build after a script change exit %d = %v, want %v", r.code, got, want)
	}

	bootToLogin(t, base)

	// One more package: kiwi runs again, its bootstrap restored from the
	// bootstrap cache, and the image has the package.
	xml := filepath.Join(dir, "recipes/node/config.xml")
	b, _ = os.ReadFile(xml)
	withLess := strings.Replace(string(b), `<package name="iproute2"/>`, `<package name="iproute2"/><package name="less"/>`, 1)
	if err := os.WriteFile(xml, []byte(withLess), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r = imsbuild(t, dir, "build", "--json", ".", "image.base")
	want = map[string]string{"image.base/prepare": "done", "image.base": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("build after a package change exit %d = %v, want %v\n%s", r.code, got, want, tail(r.stdout, 40))
	}
	t.Logf("build with one more package: %v", time.Since(start))
	if log, _ := os.ReadFile(filepath.Join(dir, ".imsbuild/cache/logs/image.base.prepare.log")); !strings.Contains(string(log), "restored from the bootstrap cache") {
		t.Errorf("second kiwi run did not restore its bootstrap from the cache:\n%s", tail(string(log), 40))
	}
	// The image step's log names the rootfs blob it stored.
	imageLog, _ := os.ReadFile(filepath.Join(dir, ".imsbuild/cache/logs/image.base.log"))
	m := regexp.MustCompile(`(?m)^rootfs sha256:([0-9a-f]{64}) `).FindSubmatch(imageLog)
	if m == nil {
		t.Fatalf("no rootfs in the image log:\n%s", imageLog)
	}
	blob := filepath.Join(dir, ".imsbuild/cache/blobs/sha256", string(m[1][:2]), string(m[1]))
	if out, err := exec.Command("unsquashfs", "-l", blob, "usr/bin/less").Output(); err != nil || !strings.Contains(string(out), "usr/bin/less") {
		t.Errorf("rootfs after adding less: %v\n%s", err, out)
	}

	// A broken recipe fails with kiwi's own message and leaves no mount
	// and no kiwi process behind.
	mounts := mountsOf(dir)
	// An unknown package: kiwi's (apt's) own words on the error line.
	if err := os.WriteFile(xml, []byte(strings.Replace(withLess, `"less"`, `"no-such-package-imsbuild"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = imsbuild(t, dir, "build", ".", "image.base")
	if r.code != 1 || !strings.Contains(r.stdout, "failed: recipe node: kiwi-ng system prepare: KiwiInstallPhaseFailed: System package installation failed: E: Unable to locate package no-such-package-imsbuild") {
		t.Fatalf("unknown package: exit %d, want 1 with apt's message on the error line\n%s", r.code, tail(r.stdout, 30))
	}
	b, _ = os.ReadFile(xml)
	if err := os.WriteFile(xml, []byte(strings.Replace(string(b), "</image>", "</imag>", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	r = imsbuild(t, dir, "build", ".", "image.base")
	if r.code != 1 || !strings.Contains(r.stdout, "image.base/prepare") || !strings.Contains(strings.ToLower(r.stdout), "kiwi") {
		t.Fatalf("broken recipe: exit %d, want 1 with kiwi's message\n%s", r.code, tail(r.stdout, 30))
	}
	if after := mountsOf(dir); after != mounts {
		t.Errorf("mounts of the build changed by a failed kiwi build: %q, before %q", after, mounts)
	}
	// Only this build's kiwi: other packages' tests may run kiwi meanwhile.
	if p := testutil.ProcessesMatching(t, dir); len(p) > 0 {
		t.Errorf("kiwi processes left: %v", p)
	}
}

// reproduce builds examples/debian-node once more from cold, in another
// directory with its own imsbuild cache and its own (empty) bootstrap
// cache, under another umask, hostname and time zone, and checks that it
// publishes the same bytes as the build in dir did: rootfs, kernel,
// initrd, SBOMs, manifests and records, so the same image ids. kiwi's
// shared package download cache stays shared: it holds the same .debs
// the mirror serves and changes no output, and a second download of
// every package would cost CI minutes for nothing. The first build
// prefetched its packages into its package cache (the default), the second
// does not (--no-prefetch): a prefetch changes no output.
func reproduce(t *testing.T, dir string) {
	t.Helper()
	testutil.RequireTool(t, "unshare")
	dir2 := copyExample(t, "debian-node")
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), "unshare", "--uts", "/bin/sh", "-c",
		`hostname repro-other-host && umask 077 && exec "$0" build --no-prefetch --bootstrap-cache "$1" .`,
		binary, filepath.Join(t.TempDir(), "bootstrap"))
	cmd.Dir = dir2
	cmd.Env = append(os.Environ(), "TZ=Asia/Tokyo")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second cold build: %v\n%s", err, tail(string(out), 40))
	}
	t.Logf("second cold build (own bootstrap): %v", time.Since(start))
	if log, _ := os.ReadFile(filepath.Join(dir2, ".imsbuild/cache/logs/image.base.prepare.log")); strings.Contains(string(log), "restored from the bootstrap cache") {
		t.Errorf("the second cold build restored its bootstrap from a cache:\n%s", tail(string(log), 40))
	} else if strings.Contains(string(log), "package prefetch") {
		t.Errorf("the --no-prefetch build prefetched:\n%s", tail(string(log), 40))
	}
	// The first build prefetched its packages. (Whether apt then took
	// them from the package cache depends on kiwi's shared cache of this
	// machine, which may hold them all: the pkgproxy tests and the bench
	// show that.)
	log, _ := os.ReadFile(filepath.Join(dir, ".imsbuild/cache/logs/image.base.prepare.log"))
	m := regexp.MustCompile(`package prefetch: (\d+) files of apt-get's resolution .*: (\d+) fetched`).FindSubmatch(log)
	if m == nil || string(m[2]) == "0" {
		t.Errorf("the first cold build did not prefetch from apt-get's resolution:\n%s", tail(string(log), 40))
	} else {
		t.Logf("first cold build prefetched %s of %s files", m[2], m[1])
	}
	first, second := publishedTree(t, filepath.Join(dir, "out")), publishedTree(t, filepath.Join(dir2, "out"))
	if d := cmp.Diff(first, second); d != "" {
		t.Errorf("two cold builds published different trees (-first +second):\n%s", d)
	}
	// Both images, with their kernel, initrd and rootfs, are in the trees.
	publishedImage(t, dir2, "debian-node-bookworm")
	publishedImage(t, dir2, "debian-compute-bookworm")
}

// mountsOf returns the lines of /proc/mounts below dir or kiwi's shared
// cache: the build's own. Other tests on the machine mount and unmount
// elsewhere meanwhile.
func mountsOf(dir string) string {
	b, _ := os.ReadFile("/proc/mounts")
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "/var/cache/imsbuild/") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// publishedImage finds the published image named name under dir/out and
// checks its manifest and md5s; it returns the image's directory.
func publishedImage(t *testing.T, dir, name string) string {
	t.Helper()
	records, _ := filepath.Glob(filepath.Join(dir, "out/records/images/*.json"))
	for _, rec := range records {
		data, err := os.ReadFile(rec)
		if err != nil {
			t.Fatal(err)
		}
		var r ims.ImageRecord
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Name != name {
			continue
		}
		// The record is the body of an IMS create; the file's name is the id.
		img := filepath.Join(dir, "out/boot-images", strings.TrimSuffix(filepath.Base(rec), ".json"))
		data, err = os.ReadFile(filepath.Join(img, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ims.ParseManifest(data)
		if err != nil {
			t.Fatal(err)
		}
		types := map[string]bool{}
		for _, a := range m.Artifacts {
			types[a.Type] = true
			file := filepath.Join(img, filepath.Base(a.Link.Path))
			if got := md5File(t, file); got != a.MD5 {
				t.Fatalf("%s md5 = %s, manifest says %s", file, got, a.MD5)
			}
		}
		for _, mt := range []string{ims.MediaTypeRootfs, ims.MediaTypeKernel, ims.MediaTypeInitrd} {
			if !types[mt] {
				t.Fatalf("manifest of %s lacks %s: %s", name, mt, data)
			}
		}
		return img
	}
	t.Fatalf("no published image named %s in %v", name, records)
	return ""
}

func md5File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// bootToLogin boots kernel + initrd with the squashfs rootfs as a virtio
// disk (dracut dmsquash-live) under qemu TCG and waits for a login prompt.
func bootToLogin(t *testing.T, img string) {
	t.Helper()
	bootQemu(t, img, 4*time.Minute, "ttyS0", "qemu-system-x86_64")
}

// bootQemu boots img's kernel + initrd with its squashfs rootfs as a
// read-only virtio disk, the console on the serial line, with qemu (the
// program and its machine arguments) and waits up to timeout for a login
// prompt on the serial line.
func bootQemu(t *testing.T, img string, timeout time.Duration, console string, qemu ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	args := slices.Concat(qemu[1:], []string{"-m", "1024", "-smp", "2", "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", filepath.Join(img, "kernel"), "-initrd", filepath.Join(img, "initrd"),
		"-append", "console=" + console + " root=live:/dev/vda rd.live.overlay.overlayfs=1 rd.live.image panic=-1 systemd.show_status=1",
		"-drive", "file=" + filepath.Join(img, "rootfs") + ",format=raw,if=virtio,readonly=on"})
	cmd := exec.CommandContext(ctx, qemu[0], args...)
	var serial testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &serial, &serial
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for !strings.Contains(serial.String(), "login:") {
		if ctx.Err() != nil {
			t.Fatalf("%s: no login prompt within %v; serial log tail:\n%s", qemu[0], time.Since(start), tail(serial.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s: booted to a login prompt in %v", qemu[0], time.Since(start))
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
