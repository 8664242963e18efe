package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestDebianArm64EndToEnd builds examples/debian-arm64 on this machine: one
// recipe as an aarch64 image (under qemu user-mode emulation on x86_64) and
// as an x86_64 image in one build with one cache, and an aarch64 image
// customized by a script that runs emulated in the sandbox. The aarch64
// root's binaries are aarch64 ELF, its kernel an arm64 Image; the records
// carry the arch; the same build again is all cached; and the aarch64
// image boots in qemu-system-aarch64 (TCG, virt machine) to a login prompt.
func TestDebianArm64EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("real emulated kiwi-ng build: many minutes")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap", "qemu-system-aarch64"} {
		testutil.RequireTool(t, tool)
	}
	if hostArch(t) == "x86_64" {
		testutil.RequireQemuUser(t, "aarch64")
	}
	dir := copyExample(t, "debian-arm64")

	start := time.Now()
	r := imsbuild(t, dir, "build", "--json", ".")
	want := map[string]string{"image.arm64/prepare": "done", "image.arm64": "done", "image.x86/prepare": "done", "image.x86": "done",
		"image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("cold build exit %d = %v, want %v\n%s\n%s", r.code, got, want, tail(r.stdout, 60), r.stderr)
	}
	t.Logf("cold build, aarch64 and x86_64: %v", time.Since(start))
	logs := filepath.Join(dir, ".imsbuild/cache/logs")
	for _, step := range []string{"image.arm64.prepare", "image.compute"} {
		if b, _ := os.ReadFile(filepath.Join(logs, step+".log")); !strings.Contains(string(b), "aarch64 binaries run emulated by") {
			t.Errorf("%s log does not say it runs emulated:\n%s", step, tail(string(b), 20))
		}
	}

	arm := publishedImage(t, dir, "debian-node-arm64-bookworm")
	x86 := publishedImage(t, dir, "debian-node-x86-bookworm")
	compute := publishedImage(t, dir, "debian-compute-arm64-bookworm")
	for name, wantArch := range map[string]string{"debian-node-arm64-bookworm": "aarch64", "debian-node-x86-bookworm": "x86_64", "debian-compute-arm64-bookworm": "aarch64"} {
		if got := recordArch(t, dir, name); got != wantArch {
			t.Errorf("record of %s: arch %q, want %q", name, got, wantArch)
		}
	}
	for img, machine := range map[string]elf.Machine{arm: elf.EM_AARCH64, compute: elf.EM_AARCH64, x86: elf.EM_X86_64} {
		for _, bin := range []string{"usr/bin/bash", "usr/lib/systemd/systemd"} {
			if got := elfMachine(t, filepath.Join(img, "rootfs"), bin); got != machine {
				t.Errorf("%s in %s: e_machine %v, want %v", bin, img, got, machine)
			}
		}
	}
	if !isArm64Image(t, filepath.Join(arm, "kernel")) {
		t.Errorf("the aarch64 kernel is no arm64 Image (gzip or not)")
	}
	out, err := exec.Command("unsquashfs", "-cat", filepath.Join(compute, "rootfs"), "etc/imsbuild-customized").Output()
	if err != nil || string(out) != "customized on aarch64\n" {
		t.Errorf("compute's /etc/imsbuild-customized = %q, %v; want the script's uname -m, aarch64", out, err)
	}

	start = time.Now()
	r = imsbuild(t, dir, "build", "--json", ".")
	want = map[string]string{"image.arm64/prepare": "cached", "image.arm64": "cached", "image.x86/prepare": "cached", "image.x86": "cached",
		"image.compute": "cached", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("warm build exit %d = %v, want %v\n%s", r.code, got, want, tail(r.stdout, 30))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("warm build took %v, want about a second", d)
	} else {
		t.Logf("warm build: %v", d)
	}

	bootArm64ToLogin(t, arm)
}

// hostArch is uname -m.
func hostArch(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("uname", "-m").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// recordArch returns the arch of the published image record named name.
func recordArch(t *testing.T, dir, name string) string {
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
		if r.Name == name {
			return r.Arch
		}
	}
	t.Fatalf("no record named %s", name)
	return ""
}

// elfMachine returns the e_machine of the ELF file path in the squashfs.
func elfMachine(t *testing.T, squashfs, path string) elf.Machine {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "x")
	// -cat follows no symlink: usr/bin/bash and systemd are files.
	out, err := exec.Command("unsquashfs", "-cat", squashfs, path).Output()
	if err != nil {
		t.Fatalf("unsquashfs -cat %s: %v", path, err)
	}
	if err := os.WriteFile(dst, out, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(dst)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	return f.Machine
}

// isArm64Image reports whether the kernel file is an arm64 Image (the
// "ARM\x64" magic at 0x38), itself or gzip-compressed as Debian ships it.
func isArm64Image(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 64)
		if _, err := io.ReadFull(zr, head); err != nil {
			t.Fatal(err)
		}
		b = head
	}
	return len(b) >= 64 && string(b[0x38:0x3c]) == "ARM\x64"
}

// bootArm64ToLogin boots the aarch64 image in qemu-system-aarch64 (TCG:
// the virt machine, a Cortex-A57) and waits for a login prompt.
func bootArm64ToLogin(t *testing.T, img string) {
	t.Helper()
	bootQemu(t, img, 10*time.Minute, "ttyAMA0", "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57")
}
