package sandbox

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// What a confined (not Spec.Privileged) command may do. Every backend gives
// it the same limits: the capabilities below and no others (the bounding
// set is cut to them, so no exec regains any), no_new_privs, the seccomp
// filter of [seccompPolicy], umask 022, a pids cgroup of Spec.PidsLimit
// processes and a /tmp tmpfs of Spec.TmpSize bytes.

// DefaultPidsLimit is the number of processes and threads a sandbox may have
// when Spec.PidsLimit is 0.
const DefaultPidsLimit = 1024

// DefaultTmpSize is the size of the /tmp tmpfs when Spec.TmpSize is 0.
const DefaultTmpSize = 1 << 30

// sandboxUmask is the umask of every sandboxed process, so that what a
// script creates in an image never depends on the umask of the builder.
const sandboxUmask = 0o022

// confinedCaps are the capabilities of a confined command: the container
// default set without MKNOD and NET_RAW. Enough to install packages (chown,
// setuid, chroot) in an image root; none administers the host (never
// SYS_ADMIN, DAC_READ_SEARCH, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_BOOT).
var confinedCaps = []int{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID, unix.CAP_KILL,
	unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP, unix.CAP_NET_BIND_SERVICE,
	unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE, unix.CAP_SETFCAP,
}

// confinedCapNames returns confinedCaps by name ("CAP_CHOWN", …).
func confinedCapNames() []string {
	names := capNames()
	out := make([]string, len(confinedCaps))
	for i, c := range confinedCaps {
		out[i] = names[c]
	}
	return out
}

// deniedSyscalls fail with EPERM in a confined sandbox: mounting and
// changing root after setup, file handles (the way out of a bind-mounted
// root), kernel modules and kexec, BPF, tracing other processes, the kernel
// keyring, new namespaces, and host-wide settings (clock, swap, reboot,
// quotas, accounting). The capability set forbids most of them already;
// the filter is the second wall.
var deniedSyscalls = []string{
	"mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"mount_setattr", "pivot_root",
	"open_by_handle_at",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"bpf", "perf_event_open", "userfaultfd",
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
	"keyctl", "add_key", "request_key",
	"unshare", "setns",
	"swapon", "swapoff", "reboot", "syslog", "acct", "quotactl", "quotactl_fd",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"iopl", "ioperm", "lookup_dcookie", "vhangup", "fanotify_init",
}

// newNamespaceFlags are the clone flags that make namespaces; clone with
// any of them fails with EPERM.
const newNamespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// seccompPolicy is the filter of a confined sandbox: allow by default, deny
// deniedSyscalls and namespace-making clones with EPERM, and clone3 (whose
// flags a filter cannot see) with ENOSYS so that libc falls back to clone.
func seccompPolicy() seccomp.Policy {
	return seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Names: deniedSyscalls, Action: seccomp.ActionErrno},
			{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)},
			{NamesWithCondtions: []seccomp.NameWithConditions{{Name: "clone", Conditions: seccomp.ArgumentConditions{
				{Argument: 0, Operation: seccomp.BitsSet, Value: newNamespaceFlags},
			}}}, Action: seccomp.ActionErrno},
		},
	}
}

// seccompFilter assembles the filter for the running architecture. System
// calls of any other ABI (i386 through int 0x80 on x86_64; x32, which the
// library refuses itself) fail with ENOSYS: the library's filter lets a
// foreign architecture through to its default action, which is "allow".
func seccompFilter() ([]bpf.RawInstruction, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	pol := seccompPolicy()
	prog, err := pol.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	guard := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionErrno) | uint32(unix.ENOSYS)},
	}
	raw, err := bpf.Assemble(append(guard, prog...))
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	return raw, nil
}

// sockFilterBytes encodes a filter as the array of struct sock_filter that
// bwrap --seccomp reads.
func sockFilterBytes(raw []bpf.RawInstruction) []byte {
	b := make([]byte, 0, 8*len(raw))
	for _, in := range raw {
		b = binary.NativeEndian.AppendUint16(b, in.Op)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

// confineThread confines the calling thread, which must be locked to its
// goroutine and is about to execute the command (the native backend's
// init): umask, capability bounding set, no_new_privs and the seccomp
// filter. Children inherit all of it.
func confineThread() error {
	unix.Umask(sandboxUmask)
	keep := map[int]bool{}
	var mask uint64
	for _, c := range confinedCaps {
		keep[c] = true
		mask |= 1 << c
	}
	for c := 0; c < 64; c++ {
		if keep[c] {
			continue
		}
		// EINVAL: past the last capability the kernel knows.
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break
		} else if err != nil {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	raw, err := seccompFilter()
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		filter[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := seccompSetFilter(&prog); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	runtime.KeepAlive(filter)
	return nil
}

// seccompSetFilter loads prog on the calling thread.
func seccompSetFilter(prog *unix.SockFprog) error {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(prog)))
	if errno != 0 {
		return errno
	}
	return nil
}
