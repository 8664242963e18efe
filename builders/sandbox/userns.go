package sandbox

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/internal/caps"
)

// A root process in an unprivileged container (a Kubernetes pod that is not
// privileged) has the container's default capabilities, without
// CAP_SYS_ADMIN: it cannot make mount or PID namespaces, and the cgroup file
// system is read-only. It can make a user namespace, though, and with the
// CAP_SETUID and CAP_SETGID of the default set it maps every uid and gid to
// itself there: files keep their real owners, as image roots need, and
// inside the namespace it may make the others. The native backend does so
// when it finds itself root without CAP_SYS_ADMIN (see [Native]); the
// script is then confined as everywhere else (capabilities, no_new_privs,
// seccomp), its capabilities count only in that user namespace, and the
// container's own limits are the outer wall.
//
// It has no PID namespace of its own there: the procfs it can have is the
// container's (see [Native]), and a PID namespace whose /proc shows other
// PIDs confuses $$, ps, pgrep and killall. Its processes are found by their
// user namespace instead, which none can leave (the seccomp filter refuses
// setns and new namespaces), and killed at the end as a PID namespace's
// would be. They may signal the container's processes (same uid 0): in a
// pod of one step, that only fails the step. They cannot read those
// processes' memory, environment or root (/proc/PID/...): the kernel wants
// CAP_SYS_PTRACE in the target's user namespace for a process of another.

// allIDs maps every uid or gid to itself: 0 to 2^32-2 (2^32-1 is the
// kernel's "no id").
const allIDs = 1<<32 - 1

// unprivilegedRoot reports whether this process is root (euid 0) without
// CAP_SYS_ADMIN in its effective set: the capability decides, not a guess
// about the environment.
func unprivilegedRoot() bool {
	return os.Geteuid() == 0 && !caps.CanMount()
}

// noPidsCgroup says in the step's log why a sandbox runs without a pids
// cgroup of its own: without CAP_SYS_ADMIN the cgroup file system is
// read-only, and the container's pids limit (Kubernetes: the kubelet's
// podPidsLimit) is the only one.
func noPidsCgroup(w io.Writer, err error) {
	if w == nil {
		return
	}
	fmt.Fprintf(w, "imsbuild sandbox: no pids cgroup of its own (%v); without CAP_SYS_ADMIN the cgroup file system is read-only, so the container's pids limit applies\n", err)
}

// userNSOf returns the user namespace of process pid, as its
// /proc/PID/ns/user link reads ("user:[4026532…]").
func userNSOf(pid int) (string, error) {
	ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		return "", fmt.Errorf("user namespace of %d: %w", pid, err)
	}
	return ns, nil
}

// pinnedUserNS is a user namespace held open, so that its identity (the
// inode in ns) is not given to a new namespace once its last process is
// gone: killUserNS must never match another sandbox's processes.
type pinnedUserNS struct {
	ns string
	f  *os.File
}

// pinUserNS opens the user namespace of process pid.
func pinUserNS(pid int) (*pinnedUserNS, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/ns/user"
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("user namespace of %d: %w", pid, err)
	}
	ns, err := os.Readlink(p)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("user namespace of %d: %w", pid, err)
	}
	// Still the namespace opened: pid is the sandbox's init, which the
	// caller has not waited for.
	return &pinnedUserNS{ns: ns, f: f}, nil
}

// Close lets the namespace go.
func (p *pinnedUserNS) Close() error { return p.f.Close() }

// killUserNSTimeout bounds killUserNS, for processes forking as fast as
// they are killed.
const killUserNSTimeout = 10 * time.Second

// killUserNS kills every process in user namespace ns until a scan of /proc
// finds none, and reaps those that were this process's children (the
// container's init adopts orphans) except keep, which another goroutine
// waits for.
func killUserNS(ns string, keep int) error {
	deadline := time.Now().Add(killUserNSTimeout)
	killed := map[int]bool{}
	reap := func() {
		for pid := range killed {
			var ws unix.WaitStatus
			if pid == keep {
				continue
			}
			if wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); wpid == pid || err != nil {
				delete(killed, pid) // reaped, or not this process's child
			}
		}
	}
	defer reap()
	for {
		reap()
		pids, err := procsInUserNS(ns)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox: %d processes of the sandbox still run after %v of killing", len(pids), killUserNSTimeout)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
			killed[pid] = true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procsInUserNS returns the live processes in user namespace ns: not
// zombies, which keep their namespace until reaped, but are dead.
func procsInUserNS(ns string) ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if got, err := os.Readlink("/proc/" + name + "/ns/user"); err == nil && got == ns && !zombie(name) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// zombie reports whether process pid (a /proc entry's name) has exited
// and waits to be reaped (state Z, or X while it goes).
func zombie(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return true // gone
	}
	// PID (COMM) STATE …: COMM may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}
