package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// runcBundle is the OCI bundle of one run: config.json, an empty rootfs
// directory (the new root of a non-jailed run, where the builder root is
// bound), runc's state dir and its log.
type runcBundle struct {
	dir string
}

func (b runcBundle) state() string  { return filepath.Join(b.dir, "state") }
func (b runcBundle) log() string    { return filepath.Join(b.dir, "runc.log") }
func (b runcBundle) rootfs() string { return filepath.Join(b.dir, "rootfs") }

// write writes config.json for p and s and creates the rootfs directory.
func (b runcBundle) write(p *plan, s Spec) error {
	if err := os.Mkdir(b.rootfs(), 0o755); err != nil {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	js, err := json.MarshalIndent(runcSpec(p, s, b.rootfs()), "", "\t")
	if err != nil {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "config.json"), js, 0o600); err != nil {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	return nil
}

// runcAllCaps returns the capabilities of a privileged run: every one in
// imsbuild's own bounding set (which a container manager running imsbuild
// may have narrowed), since runc cannot grant more.
func runcAllCaps() []string {
	var caps []string
	for i, name := range capNames() {
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err == nil && in == 1 {
			caps = append(caps, name)
		}
	}
	return caps
}

// capNames returns the names of the capabilities of Linux 5.9 and later,
// indexed by number.
func capNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
		"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
		"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
		"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
		"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	}
}

// runcSpec translates a plan into an OCI runtime configuration. A jailed
// run's root is the image root itself; a non-jailed one starts from the
// empty rootfs with the builder root (or the host root) bound read-only,
// recursively, over it. The mounts follow the plan, /dev being runc's
// default tmpfs with devpts, shm and mqueue. A confined run has the
// seccomp filter of [seccompPolicy], no_new_privs and a pids limit.
//
// A privileged run (Spec.Privileged) gets every capability and device, the
// host's /dev bound recursively, a read-write /sys, and no masked or
// read-only paths. runc makes the root's propagation rslave, so the mounts
// made inside never reach the host.
func runcSpec(p *plan, s Spec, rootfs string) *specs.Spec {
	caps := confinedCapNames()
	if s.Privileged {
		caps = runcAllCaps()
	}
	umask := uint32(sandboxUmask)
	sp := &specs.Spec{
		Version:  specs.Version,
		Hostname: Hostname,
		Process: &specs.Process{
			Args: s.Args,
			Env:  cleanEnv(s.Env),
			Cwd:  workDir(s),
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			User:            specs.User{Umask: &umask},
			NoNewPrivileges: !s.Privileged,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			// runc makes a pty for the command and relays it to its own
			// stdin (raw) and stdout, resizing it on SIGWINCH.
			Terminal: withTTY(s),
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
				"/proc/scsi",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	if s.Privileged {
		sp.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		sp.Linux.MaskedPaths, sp.Linux.ReadonlyPaths = nil, nil
	} else {
		limit := int64(s.pidsLimit())
		sp.Linux.Resources.Pids = &specs.LinuxPids{Limit: &limit}
		sp.Linux.Seccomp = runcSeccomp()
	}
	if !s.Network {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if p.jail {
		sp.Root = &specs.Root{Path: p.root}
	} else {
		base := p.base
		if base == "" {
			base = "/"
		}
		sp.Root = &specs.Root{Path: rootfs}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/", Type: "bind", Source: base,
			Options: []string{"rbind", "rro"}})
	}
	for _, m := range p.mounts {
		sp.Mounts = append(sp.Mounts, runcMounts(m, s.Privileged)...)
	}
	return sp
}

// runcSeccomp is the seccomp filter of [seccompPolicy] for runc (which
// compiles it with libseccomp). libseccomp kills a process making system
// calls of an ABI the filter does not name, so it names the compat ABIs
// (i386, x32; arm) too and filters them alike, as Docker's profile does.
func runcSeccomp() *specs.LinuxSeccomp {
	errno := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	sc := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: runcArch(),
		Syscalls: []specs.LinuxSyscall{
			{Names: deniedSyscalls, Action: specs.ActErrno, ErrnoRet: &errno},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys},
		},
	}
	// libseccomp has no "any of these bits" test: one rule per flag.
	for bit := uint64(1); bit != 0; bit <<= 1 {
		if newNamespaceFlags&bit != 0 {
			sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActErrno,
				ErrnoRet: &errno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: bit, ValueTwo: bit, Op: specs.OpMaskedEqual}}})
		}
	}
	return sc
}

// runcArch returns the seccomp architectures of the machine.
func runcArch() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	}
	return nil // libseccomp's native architecture
}

// runcMounts translates one mount of a plan. A privileged run gets the
// host's /dev and a sysfs next to its procfs.
func runcMounts(m mount, privileged bool) []specs.Mount {
	switch m.Kind {
	case kindProc:
		ms := []specs.Mount{{Destination: m.Dest, Type: "proc", Source: "proc",
			Options: []string{"nosuid", "noexec", "nodev"}}}
		if privileged {
			ms = append(ms, specs.Mount{Destination: "/sys", Type: "sysfs",
				Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "rw"}})
		}
		return ms
	case kindDev:
		if privileged {
			return []specs.Mount{{Destination: m.Dest, Type: "bind", Source: "/dev",
				Options: []string{"rbind", "nosuid"}}}
		}
		return []specs.Mount{
			{Destination: m.Dest, Type: "tmpfs", Source: "tmpfs",
				Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: path.Join(m.Dest, "pts"), Type: "devpts", Source: "devpts",
				Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: path.Join(m.Dest, "shm"), Type: "tmpfs", Source: "shm",
				Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: path.Join(m.Dest, "mqueue"), Type: "mqueue", Source: "mqueue",
				Options: []string{"nosuid", "noexec", "nodev"}},
		}
	case kindTmpfs:
		mode := m.Mode
		if mode == "" {
			mode = "0755"
		}
		opts := []string{"nosuid", "nodev", "mode=" + mode}
		if m.Size > 0 {
			opts = append(opts, "size="+strconv.FormatInt(m.Size, 10))
		}
		return []specs.Mount{{Destination: m.Dest, Type: "tmpfs", Source: "tmpfs", Options: opts}}
	case kindBind:
		opts := []string{"rbind"}
		if m.ReadOnly {
			opts = append(opts, "rro")
		}
		return []specs.Mount{{Destination: m.Dest, Type: "bind", Source: m.Source, Options: opts}}
	}
	return nil
}
