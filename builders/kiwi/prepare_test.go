package kiwi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestKiwiArgs(t *testing.T) {
	got := kiwiArgs(PrepareOptions{
		Description: "/d", Root: "/r", Profiles: []string{"KIS", "HPC"}, Type: "tbz",
		SharedCacheDir: "/c", TargetArch: "aarch64",
	}, "/l")
	want := []string{
		"--profile", "KIS", "--profile", "HPC", "--shared-cache-dir", "/c", "--target-arch", "aarch64",
		"--type", "tbz", "--logfile", "/l", "system", "prepare", "--description", "/d", "--root", "/r",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kiwiArgs() (-want +got):\n%s", diff)
	}
}

func TestToolVersion(t *testing.T) {
	testutil.RequireTool(t, "kiwi-ng")
	v, err := ToolVersion(t.Context())
	if err != nil {
		t.Fatalf("ToolVersion() = %v", err)
	}
	if !regexp.MustCompile(`^kiwi-ng \d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("ToolVersion() = %q, want \"kiwi-ng X.Y.Z\"", v)
	}
}

// fakeKiwi puts a kiwi-ng script first in PATH, or in a busybox builder
// root it returns when builder is set. It logs to --logfile, mounts a tmpfs
// on <root>/mnt, starts a background sleep carrying marker, writes
// <root>/ready and then runs body.
func fakeKiwi(t *testing.T, builder bool, marker, body string) (builderRoot string) {
	t.Helper()
	script := `#!/bin/sh
set -e
while [ $# -gt 0 ]; do
  case "$1" in
    --logfile) log=$2; shift ;;
    --root) root=$2; shift ;;
  esac
  shift
done
for i in $(seq 1 40); do echo "kiwi log line $i" >> "$log"; done
echo "progress on stdout"
mkdir -p "$root/mnt"
mount -t tmpfs imsbuild-fake-kiwi "$root/mnt"
sh -c 'sleep 300; : ` + marker + `' &
test "$(cat /proc/self/stat | cut -d' ' -f1)" -lt 100 && echo "in a pid namespace" >> "$log"
touch "$root/ready"
` + body + "\n"
	if builder {
		testutil.RequireRoot(t)
		testutil.RequireTool(t, "runc")
		builderRoot = testutil.BusyboxRoot(t, false)
		mustWrite(t, filepath.Join(builderRoot, "usr/bin/kiwi-ng"), script, 0o755)
		return builderRoot
	}
	requireNamespaces(t)
	bin := t.TempDir()
	mustWrite(t, filepath.Join(bin, "kiwi-ng"), script, 0o755)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return ""
}

// forEachSandbox runs f as a subtest for the host's kiwi-ng and for one in
// a builder root.
func forEachSandbox(t *testing.T, f func(t *testing.T, builder bool)) {
	t.Helper()
	t.Run("host", func(t *testing.T) { f(t, false) })
	t.Run("builder root", func(t *testing.T) { f(t, true) })
}

// requireNamespaces skips unless Prepare can run its sandbox here.
func requireNamespaces(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "unshare")
}

func readMounts(t *testing.T) string {
	t.Helper()
	// Without the parents that customizes beside this test mount
	// (builders/overlay) in the same namespace.
	m, err := overlay.HostMounts()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitGone polls until no process carries marker.
func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := testutil.ProcessesMatching(t, marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived Prepare: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPrepareFailureCarriesLogTail(t *testing.T) { forEachSandbox(t, testPrepareFailure) }

func testPrepareFailure(t *testing.T, builder bool) {
	marker := fmt.Sprintf("imsbuild-test-fail-%d", time.Now().UnixNano())
	builderRoot := fakeKiwi(t, builder, marker, `echo "[ ERROR   ]: 06:50:09 | KiwiInstallPhaseFailed: E: Unable to locate package nope" >> "$log"; echo "KiwiError: the last words" >> "$log"; exit 3`)
	mounts := readMounts(t)
	root := filepath.Join(t.TempDir(), "a", "root")
	kiwiLog := filepath.Join(t.TempDir(), "kiwi.log")
	mustWrite(t, kiwiLog, "stale line from an earlier run\n", 0o644)
	var out strings.Builder
	err := Prepare(t.Context(), PrepareOptions{
		Description: t.TempDir(), Root: root, Log: &out, KiwiLog: kiwiLog, BuilderRoot: builderRoot,
	})
	var perr *PrepareError
	if !errors.As(err, &perr) {
		t.Fatalf("Prepare() = %v, want a *PrepareError", err)
	}
	if len(perr.Tail) != tailLines || perr.Tail[tailLines-1] != "KiwiError: the last words" {
		t.Errorf("Tail = %q, want the last %d lines of the kiwi log", perr.Tail, tailLines)
	}
	if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "in a pid namespace") ||
		!strings.Contains(err.Error(), "KiwiError: the last words") {
		t.Errorf("Prepare() = %v", err)
	}
	// The first line says what went wrong, in kiwi's words.
	if first, _, _ := strings.Cut(err.Error(), "\n"); !strings.HasSuffix(first, ": KiwiInstallPhaseFailed: E: Unable to locate package nope (exit status 3)") {
		t.Errorf("Prepare() first line = %q, want kiwi's error", first)
	}
	if b, _ := os.ReadFile(kiwiLog); strings.Contains(string(b), "stale") {
		t.Error("kiwi log kept the lines of an earlier run")
	}
	if !strings.Contains(out.String(), "progress on stdout") {
		t.Errorf("Log = %q, want kiwi's output", out.String())
	}
	waitGone(t, marker)
	if got := readMounts(t); got != mounts {
		t.Errorf("/proc/mounts changed:\nbefore:\n%s\nafter:\n%s", mounts, got)
	}
}

func TestPrepareCancelKillsNamespace(t *testing.T) { forEachSandbox(t, testPrepareCancel) }

func testPrepareCancel(t *testing.T, builder bool) {
	marker := fmt.Sprintf("imsbuild-test-cancel-%d", time.Now().UnixNano())
	builderRoot := fakeKiwi(t, builder, marker, "sleep 300")
	mounts := readMounts(t)
	root := filepath.Join(t.TempDir(), "root")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Prepare(ctx, PrepareOptions{Description: t.TempDir(), Root: root, BuilderRoot: builderRoot})
	}()

	// Wait until the fake kiwi mounted, forked and is sleeping.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(root, "ready")); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Prepare() returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("fake kiwi did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := readMounts(t); got != mounts {
		t.Errorf("kiwi's mount reached the host:\n%s", got)
	}
	if len(testutil.ProcessesMatching(t, marker)) == 0 {
		t.Fatal("the background process of the fake kiwi is not running")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			t.Errorf("Prepare() = %v, want a context error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Prepare did not return after cancel")
	}
	waitGone(t, marker)
	if got := readMounts(t); got != mounts {
		t.Errorf("/proc/mounts changed:\nbefore:\n%s\nafter:\n%s", mounts, got)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Errorf("remove root after cancel: %v", err)
	}
}

func TestPrepareRootNotEmpty(t *testing.T) {
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "x"), "x", 0o644)
	err := Prepare(t.Context(), PrepareOptions{Description: t.TempDir(), Root: root})
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Prepare() = %v, want a not-empty error", err)
	}
}

func TestPrepareRejectsSharedCacheBelowTmp(t *testing.T) {
	for _, dir := range []string{"/tmp/kiwi-cache", "/var/tmp", "relative/cache"} {
		err := Prepare(t.Context(), PrepareOptions{Description: t.TempDir(), Root: filepath.Join(t.TempDir(), "r"), SharedCacheDir: dir})
		if err == nil || !strings.Contains(err.Error(), "shared cache dir") {
			t.Errorf("Prepare(SharedCacheDir %s) = %v, want a shared cache dir error", dir, err)
		}
	}
}

func TestPrepareUmask(t *testing.T) { forEachSandbox(t, testPrepareUmask) }

// testPrepareUmask runs kiwi from a process with umask 021: the image root,
// its /dev and a file kiwi writes must still get the usual modes.
func testPrepareUmask(t *testing.T, builder bool) {
	marker := fmt.Sprintf("imsbuild-test-umask-%d", time.Now().UnixNano())
	builderRoot := fakeKiwi(t, builder, marker, `mkdir "$root/dev"; echo x > "$root/etc-file"`)
	root := filepath.Join(t.TempDir(), "root")
	old := syscall.Umask(0o021)
	defer syscall.Umask(old)
	err := Prepare(t.Context(), PrepareOptions{
		Description: t.TempDir(), Root: root, Log: io.Discard, KiwiLog: filepath.Join(t.TempDir(), "kiwi.log"), BuilderRoot: builderRoot,
	})
	syscall.Umask(old)
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	waitGone(t, marker)
	for name, want := range map[string]os.FileMode{".": os.ModeDir | 0o755, "dev": os.ModeDir | 0o755, "etc-file": 0o644} {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode = %v, want %v", name, fi.Mode(), want)
		}
	}
}

// TestPrepareFixedHostname: debootstrap copies /etc/hostname into the
// root with cp -a; the host's kiwi sees a fixed file there (localhost,
// 0644), so the image carries neither the builder's name nor its file
// mode, and the host's file is left as it was.
func TestPrepareFixedHostname(t *testing.T) {
	host, err := os.ReadFile("/etc/hostname")
	if err != nil {
		t.Fatalf("this test needs the host's /etc/hostname: %v", err)
	}
	marker := fmt.Sprintf("imsbuild-test-hostname-%d", time.Now().UnixNano())
	fakeKiwi(t, false, marker, `cp -a /etc/hostname "$root/hostname"`)
	root := filepath.Join(t.TempDir(), "root")
	if err := Prepare(t.Context(), PrepareOptions{
		Description: t.TempDir(), Root: root, Log: io.Discard, KiwiLog: filepath.Join(t.TempDir(), "kiwi.log"),
	}); err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	waitGone(t, marker)
	fi, err := os.Stat(filepath.Join(root, "hostname"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(root, "hostname"))
	if string(got) != "localhost\n" || fi.Mode() != 0o644 {
		t.Errorf("the root's copy of /etc/hostname = %q mode %v, want \"localhost\\n\" mode 0644", got, fi.Mode())
	}
	if after, _ := os.ReadFile("/etc/hostname"); string(after) != string(host) {
		t.Errorf("the host's /etc/hostname changed: %q, was %q", after, host)
	}
}
