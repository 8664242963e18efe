package binfmt

import (
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/treehash"
)

const aarch64Magic = "7f454c460201010000000000000000000200b700"

// fakeDir is a binfmt_misc directory with the given handler files.
func fakeDir(t *testing.T, handlers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"register": "", "status": "enabled\n"}
	for k, v := range handlers {
		files[k] = v
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// fakeQemu puts an executable qemu-aarch64-static alone on PATH.
func fakeQemu(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	p := filepath.Join(bin, "qemu-aarch64-static")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho 'qemu-aarch64 version 9.9.9'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	return p
}

func handlerFile(interp, flags string, enabled bool) string {
	state := "disabled"
	if enabled {
		state = "enabled"
	}
	return state + "\ninterpreter " + interp + "\nflags: " + flags + "\noffset 0\nmagic " + aarch64Magic + "\nmask ffffffffffffff00fffffffffffffffffeffffff\n"
}

func TestEnsureUsesFixBinaryHandler(t *testing.T) {
	qemu := fakeQemu(t)
	dir := fakeDir(t, map[string]string{
		"python3.11":   "enabled\ninterpreter /usr/bin/python3.11\nflags: \noffset 0\nmagic 550d0d0a\n",
		"qemu-aarch64": handlerFile(qemu, "PF", true),
	})
	var log bytes.Buffer
	e, err := Ensure("aarch64", dir, &log)
	if err != nil {
		t.Fatal(err)
	}
	if e.Handler != "qemu-aarch64" || e.Interpreter != qemu || e.Registered {
		t.Errorf("Ensure() = %+v, want the qemu-aarch64 handler of %s, not registered", e, qemu)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "register")); len(b) != 0 || log.Len() != 0 {
		t.Errorf("Ensure registered %q and logged %q with a fix-binary handler present", b, log.String())
	}
}

// A handler without the fix-binary flag (qemu-user-binfmt's, or a
// disabled one) does not run binaries in a chroot: Ensure registers its own.
func TestEnsureRegistersFixBinaryHandler(t *testing.T) {
	for _, tc := range []struct {
		name     string
		handlers map[string]string
	}{
		{"none", nil},
		{"without F", map[string]string{"qemu-aarch64": handlerFile("/usr/bin/qemu-aarch64", "P", true)}},
		{"disabled", map[string]string{"qemu-aarch64": handlerFile("/usr/bin/qemu-aarch64-static", "F", false)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qemu := fakeQemu(t)
			dir := fakeDir(t, tc.handlers)
			var log bytes.Buffer
			e, err := Ensure("aarch64", dir, &log)
			if err != nil {
				t.Fatal(err)
			}
			want := `:imsbuild-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:` +
				`\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:` + qemu + ":F"
			if b, _ := os.ReadFile(filepath.Join(dir, "register")); string(b) != want {
				t.Errorf("register line = %q, want %q", b, want)
			}
			if !e.Registered || e.Interpreter != qemu || !strings.Contains(log.String(), "registered binfmt_misc handler imsbuild-aarch64") {
				t.Errorf("Ensure() = %+v, log %q; want it registered and said so", e, log.String())
			}
		})
	}
}

func TestEnsureErrors(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Ensure("aarch64", fakeDir(t, nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "install the qemu-user-static package") {
		t.Errorf("Ensure() without qemu = %v, want an error naming qemu-user-static", err)
	}
	dir := fakeDir(t, nil)
	os.WriteFile(filepath.Join(dir, "status"), []byte("disabled\n"), 0o644)
	if _, err := Ensure("aarch64", dir, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "binfmt_misc is disabled") {
		t.Errorf("Ensure() with binfmt_misc disabled = %v, want it said", err)
	}
	if _, err := Ensure("riscv64", dir, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "unknown architecture") {
		t.Errorf("Ensure(riscv64) = %v, want unknown architecture", err)
	}
}

func TestArchNames(t *testing.T) {
	if HostArch() != "x86_64" && HostArch() != "aarch64" {
		t.Skipf("host %s", HostArch())
	}
	if Emulated(HostArch()) || Emulated("") {
		t.Errorf("Emulated(%q) or Emulated(\"\") = true, want false", HostArch())
	}
	other := map[string]string{"x86_64": "aarch64", "aarch64": "x86_64"}[HostArch()]
	if !Emulated(other) {
		t.Errorf("Emulated(%q) = false on %s", other, HostArch())
	}
	if DebianArch("aarch64") != "arm64" || DebianArch("x86_64") != "amd64" || DebianArch("sparc") != "" {
		t.Errorf("DebianArch: aarch64 %q, x86_64 %q, sparc %q", DebianArch("aarch64"), DebianArch("x86_64"), DebianArch("sparc"))
	}
}

// On this machine: an aarch64 program runs, natively or emulated, and
// inside a chroot without any qemu in it (the fix-binary flag).
func TestEnsureRunsAarch64(t *testing.T) {
	testutil.RequireRoot(t)
	if HostArch() == "x86_64" {
		testutil.RequireQemuUser(t, "aarch64")
	}
	var log bytes.Buffer
	e, err := Ensure("aarch64", "", &log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("emulator %+v; log %q", e, log.String())
	root := t.TempDir()
	testutil.CopyExecutable(t, testutil.BuildStaticFor(t, "../sandbox/testdata/archprobe", "arm64"), filepath.Join(root, "archprobe"))
	out, err := exec.Command("chroot", root, "/archprobe").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "arm64 aarch64" {
		t.Fatalf("chroot %s /archprobe = %q, %v; want \"arm64 aarch64\"", root, got, err)
	}
	if Emulated("aarch64") {
		id, err := e.Identity(t.Context())
		if err != nil || !strings.Contains(id, "qemu-aarch64 version") || !strings.Contains(id, " sha256:") {
			t.Errorf("Identity() = %q, %v", id, err)
		}
	}
}

// With no handler of the fix-binary flag, Identity names the emulator
// Ensure would register: qemu-aarch64-static from PATH.
func TestIdentityOfEmulatorToRegister(t *testing.T) {
	fakeQemu(t)
	e, err := Lookup("aarch64", fakeDir(t, map[string]string{"qemu-aarch64": handlerFile("/usr/bin/qemu-aarch64", "P", true)}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.Identity(t.Context())
	if err != nil || !strings.HasPrefix(id, "qemu-aarch64 version 9.9.9 sha256:") {
		t.Errorf("Identity() = %q, %v; want the version line and the binary's sha256", id, err)
	}
}

// With a handler, Identity names the emulator the kernel runs, not what
// the handler's path holds: here a handler file says a fake qemu, and the
// kernel runs the host's registered one.
func TestIdentityOfRunningEmulator(t *testing.T) {
	testutil.RequireRoot(t)
	if HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on x86_64; this is %s", HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	real, err := Ensure("aarch64", "", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want, err := treehash.File(t.Context(), real.Interpreter, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := fakeQemu(t)
	e, err := Lookup("aarch64", fakeDir(t, map[string]string{"qemu-aarch64": handlerFile(fake, "F", true)}))
	if err != nil {
		t.Fatal(err)
	}
	if e.Interpreter != fake {
		t.Fatalf("Lookup() = %+v, want the fake handler", e)
	}
	id, err := e.Identity(t.Context())
	if err != nil || !strings.HasPrefix(id, "qemu-aarch64 version ") || strings.Contains(id, "9.9.9") || !strings.HasSuffix(id, " "+want) {
		t.Errorf("Identity() = %q, %v; want the version and digest (%s) of the registered %s", id, err, want, real.Interpreter)
	}
}

// The wait programs are ELF executables of their machine; the one of this
// host's runs, natively, until its stdin is closed.
func TestWaitProgram(t *testing.T) {
	for arch, machine := range map[string]elf.Machine{"aarch64": elf.EM_AARCH64, "x86_64": elf.EM_X86_64} {
		f, err := elf.NewFile(bytes.NewReader(waitProgram(arch)))
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if f.Machine != machine || f.Type != elf.ET_EXEC || len(f.Progs) != 1 {
			t.Errorf("%s: machine %v, type %v, %d program headers", arch, f.Machine, f.Type, len(f.Progs))
		}
	}
	if waitProgram("riscv64") != nil {
		t.Error("waitProgram(riscv64) != nil")
	}
	exe, stop, err := running(t.Context(), HostArch())
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSuffix(strings.TrimPrefix(exe, "/proc/"), "/exe")
	time.Sleep(200 * time.Millisecond) // it waits on its stdin
	link, err := os.Readlink(exe)
	if err != nil || !strings.Contains(link, "imsbuild-binfmt-probe-") {
		t.Errorf("%s -> %q, %v; want the probe", exe, link, err)
	}
	stop()
	if _, err := os.Stat("/proc/" + pid); err == nil {
		t.Errorf("the probe (pid %s) runs after stop", pid)
	}
}

// A TMPDIR where nothing may run (noexec) is said, with the way out.
func TestRunningNoexecTmpdir(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "noexec,size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a noexec tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	t.Setenv("TMPDIR", dir)
	if _, _, err := running(t.Context(), HostArch()); err == nil || !strings.Contains(err.Error(), "mounted noexec? set TMPDIR") {
		t.Errorf("running() in a noexec TMPDIR = %v, want it said", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the probe was left in %s", dir)
	}
}
