package sandbox

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
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

// allIDs maps every uid or gid to itself: 0 to 2^32-2 (2^32-1 is the
// kernel's "no id").
const allIDs = 1<<32 - 1

// unprivilegedRoot reports whether this process is root (euid 0) without
// CAP_SYS_ADMIN in its effective set: the capability decides, not a guess
// about the environment.
func unprivilegedRoot() bool {
	if os.Geteuid() != 0 {
		return false
	}
	return !hasEffectiveCap(unix.CAP_SYS_ADMIN)
}

// hasEffectiveCap reports whether capability c is in the calling thread's
// effective set.
func hasEffectiveCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
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
