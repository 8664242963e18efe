// Package testutil holds helpers shared by imsbuild tests.
package testutil

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// required reports whether IMSBUILD_TEST_REQUIRE names tool (or is "all").
// CI sets it so that a missing tool fails instead of skipping.
func required(tool string) bool {
	v := os.Getenv("IMSBUILD_TEST_REQUIRE")
	if v == "all" {
		return true
	}
	return slices.Contains(strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }), tool)
}

// RequireTool returns the path of tool, skipping the test when it is missing
// unless IMSBUILD_TEST_REQUIRE names it, in which case the test fails.
func RequireTool(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if required(tool) {
		t.Fatalf("%s is required (IMSBUILD_TEST_REQUIRE) but not installed: %v", tool, err)
	}
	t.Skipf("%s not installed", tool)
	return ""
}

// RequireRoot skips the test unless it runs as root (or fails when
// IMSBUILD_TEST_REQUIRE names "root").
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if required("root") {
		t.Fatal("root is required (IMSBUILD_TEST_REQUIRE)")
	}
	t.Skip("needs root")
}

// RequireEnv returns the environment variable name, which a test setup sets
// (the Kubernetes cluster's kubeconfig, the builder image), skipping the test
// when it is unset unless IMSBUILD_TEST_REQUIRE names what (or "all"), in
// which case the test fails: CI must not pass without running it.
func RequireEnv(t testing.TB, name, what string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if required(what) {
		t.Fatalf("%s is required (IMSBUILD_TEST_REQUIRE) but %s is not set", what, name)
	}
	t.Skipf("%s not set (%s)", name, what)
	return ""
}

// BusyboxRoot builds a tiny image root with busybox-static (/bin/sh and its
// applets), /etc, /tmp and optional /boot kernel and initrd files, and returns it.
func BusyboxRoot(t testing.TB, withBoot bool) string {
	t.Helper()
	bb := RequireTool(t, "busybox")
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "tmp", "root", "proc", "dev", "sys", "usr/bin", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		_ = os.Symlink("busybox", filepath.Join(root, "bin", applet))
	}
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":      "root:x:0:\n",
		"etc/os-release": "ID=busybox\nNAME=busybox\n",
	}
	if withBoot {
		files["boot/vmlinuz-6.1.0-test"] = "fake kernel\n"
		files["boot/initrd.img-6.1.0-test"] = "fake initrd\n"
	}
	WriteFiles(t, root, files, 0o644)
	if withBoot {
		_ = os.Symlink("vmlinuz-6.1.0-test", filepath.Join(root, "boot/vmlinuz"))
		_ = os.Symlink("initrd.img-6.1.0-test", filepath.Join(root, "boot/initrd.img"))
	}
	return root
}

// ProcessesMatching returns "pid: cmdline" of live processes whose command
// line contains substr (arguments joined by spaces), for leak checks. Tests
// of other packages run at the same time: make substr unique to the test
// (a temp dir, a marker, an unusual sleep duration).
func ProcessesMatching(t testing.TB, substr string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if strings.Contains(cmd, substr) {
			out = append(out, filepath.Base(d)+": "+cmd)
		}
	}
	return out
}

// SyncBuffer is a bytes.Buffer safe for a writer (a process's output) and
// a test polling it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// SSHKey makes an ed25519 key pair with ssh-keygen (no passphrase) and
// returns the private key's path (the public key is beside it, .pub) and
// the public key line.
func SSHKey(t testing.TB) (string, string) {
	t.Helper()
	keygen := RequireTool(t, "ssh-keygen")
	key := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return key, strings.TrimSpace(string(pub))
}

// RequireQemuUser returns the path of qemu-<arch>-static (Debian's
// qemu-user-static), skipping the test when it is missing unless
// IMSBUILD_TEST_REQUIRE names "qemu-user", in which case the test fails.
func RequireQemuUser(t testing.TB, arch string) string {
	t.Helper()
	tool := "qemu-" + arch + "-static"
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	if required("qemu-user") {
		t.Fatalf("%s (qemu-user-static) is required (IMSBUILD_TEST_REQUIRE qemu-user) but not installed: %v", tool, err)
	}
	t.Skipf("%s not installed (qemu-user-static)", tool)
	return ""
}
