package sandbox_test

import (
	"io"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestRunEmulated: an aarch64 program in an image root runs, jailed, in
// every backend through qemu's binfmt_misc handler with the fix-binary
// flag (no qemu in the root), and stays confined: the seccomp filter and
// the capability set see qemu's host system calls and refuse unshare as
// they do for an x86_64 program.
func TestRunEmulated(t *testing.T) {
	testutil.RequireRoot(t)
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on x86_64; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	if _, err := binfmt.Ensure("aarch64", "", io.Discard); err != nil {
		t.Fatal(err)
	}
	probe := testutil.BuildStaticFor(t, "./testdata/archprobe", "arm64")
	// On the host the probe may unshare: the sandbox's refusal is its own.
	if out, err := exec.Command(probe, "unshare").CombinedOutput(); err != nil || string(out) != "unshare: ok\n" {
		t.Fatalf("archprobe unshare on the host = %q, %v; want ok", out, err)
	}
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		root := testutil.BusyboxRoot(t, false)
		testutil.CopyExecutable(t, probe, filepath.Join(root, "archprobe"))
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, "/archprobe; /archprobe unshare || echo refused")
		want := "arm64 aarch64\nunshare: operation not permitted\nrefused\n"
		if err != nil || got != want {
			t.Errorf("Run() = %q, %v (stderr %q); want %q", got, err, stderr, want)
		}
	})
}
