// Package sandbox runs commands isolated in Linux namespaces, jailed in an
// image root or in the builder environment with the image at /mnt/image.
//
// Three backends implement [Sandbox]: bubblewrap ("bwrap", preferred when
// installed); "native", which re-executes the current binary with
// [InitArg] as its first argument so that [MaybeRunInit] sets up the mounts
// inside fresh mount, PID, IPC, UTS and (unless networking is asked for)
// network namespaces before it executes the command; and "runc", an OCI
// runtime run on a bundle generated for each run (chosen explicitly with
// [Open] or [NewRunc], never by [New]). Programs that may use the native
// backend must call [MaybeRunInit] first thing in main (tests: in TestMain).
//
// Every backend gives the same view:
//
//   - jailed: the image root is "/", with a fresh /proc, a minimal /dev, and a
//     private tmpfs at /tmp (or Spec.TmpDir bound there); with Network the host
//     network is shared and the host's /etc/resolv.conf is bound read-only
//     over the image's one when the image has the file.
//   - non-jailed: the builder root (Spec.BuilderRoot, an unpacked OCI image
//     rootfs) or else the host root read-only, fresh /proc, /dev and /tmp,
//     and the image root bound read-write at /mnt/image.
//
// With Spec.TTY and a terminal on stdin, bwrap and native make it the
// command's controlling terminal, so that Ctrl-C and job control work; runc
// gives the command a pty of its own (process.terminal) and relays it to
// that terminal, which it puts in raw mode and follows on SIGWINCH.
//
// Every run that is not [Spec.Privileged] is confined, whatever the backend
// (see docs/security.md): the command runs as root but with only
// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
// NET_BIND_SERVICE, SYS_CHROOT, AUDIT_WRITE and SETFCAP, with no_new_privs,
// a seccomp filter refusing mounts, file handles, modules, kexec, BPF,
// ptrace, keyrings, new namespaces and other ABIs (i386, x32), umask 022,
// a pids cgroup of Spec.PidsLimit tasks (removed after the run), a /tmp
// tmpfs of Spec.TmpSize bytes, and /proc/sys, /proc/sysrq-trigger and
// friends read-only. It stays root in the initial user namespace: image
// roots are host directories owned by the image's real uids. Run by root
// without CAP_SYS_ADMIN (an unprivileged container), the native backend
// makes a user namespace mapping every id to itself instead, shares the
// container's /proc and PID namespace, and has no pids cgroup of its own
// (see [Native]).
//
// Under runc the command is its PID namespace's init (as in "docker run"
// without --init), runc adds HOME to an environment without it, a /tmp
// tmpfs takes the mode of the directory it covers, and the command has at
// most 1024 open files.
//
// Mountpoints missing in the image root are created before the run and
// removed afterwards, so nothing of the sandbox is left in the image (or in
// the builder root). No mount
// or process outlives Run: on success, failure, timeout or cancellation the
// whole PID namespace is killed and waited for.
package sandbox
