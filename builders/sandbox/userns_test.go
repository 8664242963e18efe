package sandbox_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestNativeInUserNamespace: the native backend as it runs in an
// unprivileged pod (its own user namespace mapping every id to itself,
// the container's /proc bound) keeps the real owners of what a script
// writes, and confines the script as everywhere: no mount, no namespace,
// no CAP_SYS_ADMIN; the processes outside, though listed in the bound
// /proc and run by the same uid 0, are out of its reach (environment,
// root, signals).
func TestNativeInUserNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	sb := sandbox.NewNativeInUserNS()
	t.Run("real owners", func(t *testing.T) {
		root := testutil.BusyboxRoot(t, false)
		script := `echo x > /etc/x && chown 1234:1234 /etc/x && chmod 6755 /etc/x && stat -c '%u %g %a' /etc/x`
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, script)
		if err != nil || got != "1234 1234 6755\n" {
			t.Fatalf("Run() = %q, %v; want %q (stderr %q)", got, err, "1234 1234 6755\n", stderr)
		}
		fi, err := os.Stat(filepath.Join(root, "etc/x"))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 1234 || fi.Mode()&os.ModeSetuid == 0 {
			t.Errorf("on the host: uid %d gid %d mode %v; want 1234 1234 setuid", st.Uid, st.Gid, fi.Mode())
		}
	})
	t.Run("confined", func(t *testing.T) {
		root := testutil.BusyboxRoot(t, false)
		self := strconv.Itoa(os.Getpid())
		// Each line that prints is an escape, but "pids agree" ($$ is
		// the script's PID in the /proc it sees: the container's, with
		// its PID namespace), "outside" (that /proc shows the test) and
		// "probed" (the script got to the end).
		script := `
mount -t tmpfs none /mnt 2>/dev/null && echo mounted
unshare -U true 2>/dev/null && echo user namespace
unshare -m true 2>/dev/null && echo mount namespace
eff=$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)
[ $(( 0x$eff >> 21 & 1 )) -ne 0 ] && echo CAP_SYS_ADMIN
[ "$(cut -d' ' -f1 /proc/$$/stat)" = "$$" ] && echo pids agree
[ -r /proc/` + self + `/cmdline ] && echo outside
cat /proc/` + self + `/environ >/dev/null 2>&1 && echo environ
ls /proc/` + self + `/root/ >/dev/null 2>&1 && echo root
cat /proc/` + self + `/maps >/dev/null 2>&1 && echo maps
echo probed`
		want := "pids agree\noutside\nprobed\n"
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, script)
		if err != nil || got != want {
			t.Errorf("Run() = %q, %v; want only %q (stderr %q)", got, err, want, stderr)
		}
		if strings.Contains(stderr, "no pids cgroup") {
			t.Errorf("stderr %q: the pids cgroup is writable here, want one", stderr)
		}
	})
	// Without a PID namespace of its own, the sandbox still leaves no
	// process behind: a daemon that left the script's session and an
	// orphan of it are killed once the script ends, before Run returns,
	// and promptly (no output pipe held open).
	t.Run("nothing outlives Run", func(t *testing.T) {
		root := testutil.BusyboxRoot(t, false)
		marker := "31337.25" // the sleeps' argument, in their command lines
		script := `setsid sleep ` + marker + ` & (sleep ` + marker + ` &); sleep 0.2; echo started`
		start := time.Now()
		got, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true}, script)
		if err != nil || got != "started\n" {
			t.Fatalf("Run() = %q, %v (stderr %q)", got, err, stderr)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run took %v, want it to end with the script", d)
		}
		noneLeft(t, marker)
	})
	// On timeout the sandbox's init is killed first: the script and its
	// daemon, adopted by no sandbox process, go all the same.
	t.Run("nothing outlives a timeout", func(t *testing.T) {
		root := testutil.BusyboxRoot(t, false)
		marker := "31337.75"
		script := `setsid sleep ` + marker + ` & sleep ` + marker
		start := time.Now()
		_, stderr, err := shell(t, sb, sandbox.Spec{Root: root, Jail: true, Timeout: 500 * time.Millisecond}, script)
		if !errors.Is(err, sandbox.ErrTimeout) {
			t.Fatalf("Run() = %v, want the timeout (stderr %q)", err, stderr)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run took %v after a timeout of 500ms", d)
		}
		noneLeft(t, marker)
	})
}

// noneLeft fails t when a process with marker in its command line runs,
// and kills it.
func noneLeft(t *testing.T, marker string) {
	t.Helper()
	pids := procsWith(t, marker)
	for _, p := range pids {
		if pid, err := strconv.Atoi(p); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if len(pids) != 0 {
		t.Errorf("processes %v of the sandbox outlived Run", pids)
	}
}
