package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// InitArg is the hidden first argument with which the native backend
// re-executes the current binary; see [MaybeRunInit].
const InitArg = "__imsbuild-sandbox-init"

// statusFD is the child's end of the setup status pipe: it gets the error
// text when setup fails, and is closed by the exec of the command.
const statusFD = 3

// defaultPath is searched for the command when its environment has no PATH.
const defaultPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// MaybeRunInit must be called first thing in main (and in TestMain of tests
// using the native backend). When the process was started by the native
// backend (os.Args[1] == InitArg) it sets up the sandbox, runs the command
// and exits with its status, never returning; otherwise it returns at once.
func MaybeRunInit() {
	if len(os.Args) < 2 || os.Args[1] != InitArg {
		return
	}
	err := runInit(os.Getenv(specEnv))
	if status := os.NewFile(statusFD, "sandbox-status"); status != nil {
		_, _ = fmt.Fprintf(status, "%v", err)
	}
	os.Exit(127)
}

// runInit runs inside the new namespaces as the PID namespace's init. It
// returns only on error.
func runInit(js string) error {
	// The command inherits the credentials, bounding set and seccomp
	// filter of the thread that forks it, all per-thread: one thread does
	// everything. It is never unlocked; init exits from it.
	runtime.LockOSThread()
	var is initSpec
	if err := json.Unmarshal([]byte(js), &is); err != nil {
		return fmt.Errorf("read spec: %w", err)
	}
	if len(is.Args) == 0 {
		return errors.New("no command")
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if is.UserNS {
		// Not the PID namespace's init: orphans of the command come
		// here, to be reaped (reap), not to the container's init.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("child subreaper: %w", err)
		}
	}
	newroot := is.Root
	if is.Jail {
		if err := unix.Mount(is.Root, is.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", is.Root, err)
		}
	} else {
		newroot = is.Staging
		base := is.Base
		if base == "" {
			base = "/"
		}
		if err := unix.Mount(base, newroot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s at %s: %w", base, newroot, err)
		}
		if err := readOnly(newroot); err != nil {
			return err
		}
	}
	for _, m := range is.Mounts {
		if m.Kind == kindProc && is.UserNS {
			m = mount{Kind: kindContainerProc, Dest: m.Dest}
		}
		if err := mountOne(newroot, m); err != nil {
			return err
		}
	}
	if err := unix.Sethostname([]byte(Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if !is.Network {
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if err := enterRoot(newroot); err != nil {
		return err
	}
	if err := unix.Chdir(is.Dir); err != nil {
		return fmt.Errorf("chdir %s: %w", is.Dir, err)
	}
	prog, err := lookPath(is.Args[0], is.Env)
	if err != nil {
		return err
	}
	if err := confineThread(); err != nil {
		return err
	}
	unix.CloseOnExec(statusFD)
	// With a terminal, init is the session leader holding it; the command
	// gets its own process group in the foreground, so that Ctrl-C reaches
	// the command and not init.
	sys := &syscall.SysProcAttr{Setsid: true}
	if is.TTY {
		sys = &syscall.SysProcAttr{Foreground: true, Ctty: 0}
	}
	pid, err := syscall.ForkExec(prog, is.Args, &syscall.ProcAttr{
		Env:   is.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		return fmt.Errorf("exec %s: %w", prog, err)
	}
	unix.Close(statusFD) // setup done: the parent reads EOF
	code := reap(pid)
	if is.UserNS {
		killLeftovers()
	}
	os.Exit(code)
	return nil
}

// killLeftovers kills what the command left running, as the end of a PID
// namespace would: every other process in init's user namespace (none can
// leave it), reaping them, since init is their subreaper. Init does it
// before it exits, so that none holds the sandbox's output pipes; the
// parent's killUserNS takes whatever this misses.
func killLeftovers() {
	self := os.Getpid()
	ns, err := userNSOf(self)
	if err != nil {
		return
	}
	deadline := time.Now().Add(killUserNSTimeout)
	for time.Now().Before(deadline) {
		pids, err := procsInUserNS(ns)
		if err != nil {
			return
		}
		n := 0
		for _, pid := range pids {
			if pid != self {
				_ = unix.Kill(pid, unix.SIGKILL)
				n++
			}
		}
		for {
			var ws unix.WaitStatus
			if wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != nil || wpid <= 0 {
				break
			}
		}
		if n == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// reap waits for the command pid as the namespace's init, reaping orphans
// on the way, and returns its shell-style exit code. The command is not
// init itself so that it keeps the usual signal semantics (init ignores
// signals it has no handler for); when init exits, the kernel kills the
// rest of the namespace.
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 127
		case wpid != pid:
			continue
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

// readOnly makes the mount at target and every mount below it read-only.
func readOnly(target string) error {
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, target, unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", target, err)
	}
	return nil
}

// mountOne performs m on top of newroot.
func mountOne(newroot string, m mount) error {
	target := filepath.Join(newroot, m.Dest)
	if err := ensureTarget(target, m.File); err != nil {
		return err
	}
	var err error
	switch m.Kind {
	case kindProc:
		if err := unix.Mount("proc", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount proc %s: %w", m.Dest, err)
		}
		return procReadOnly(target)
	case kindContainerProc:
		if err := unix.Mount("/proc", target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind the container's /proc at %s: %w", m.Dest, err)
		}
		return procReadOnly(target)
	case kindTmpfs:
		mode := m.Mode
		if mode == "" {
			mode = "0755"
		}
		opts := "mode=" + mode
		if m.Size > 0 {
			opts += ",size=" + strconv.FormatInt(m.Size, 10)
		}
		err = unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
	case kindDev:
		return mountDev(target)
	case kindBind:
		err = unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, "")
		if err == nil && m.ReadOnly {
			return readOnly(target)
		}
	default:
		return fmt.Errorf("mount %s: unknown kind %q", m.Dest, m.Kind)
	}
	if err != nil {
		return fmt.Errorf("mount %s %s: %w", m.Kind, m.Dest, err)
	}
	return nil
}

// procReadOnlyPaths are the host-wide knobs of /proc a root without
// CAP_SYS_ADMIN could still write (kernel.core_pattern runs a program on the
// host; sysrq-trigger reboots it); they are bound read-only over themselves,
// as runc and bwrap do.
var procReadOnlyPaths = []string{"bus", "fs", "irq", "sys", "sysrq-trigger"}

// procReadOnly makes procReadOnlyPaths of the procfs at target read-only.
func procReadOnly(target string) error {
	for _, name := range procReadOnlyPaths {
		p := filepath.Join(target, name)
		if _, err := os.Lstat(p); err != nil {
			continue // not in this kernel
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", p, err)
		}
		if err := readOnly(p); err != nil {
			return err
		}
	}
	return nil
}

// ensureTarget creates a missing mountpoint. The parent created those in
// host directories already, so this only creates them in fresh filesystems.
func ensureTarget(target string, file bool) error {
	if _, err := os.Lstat(target); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !file {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("mountpoint: %w", err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	return f.Close()
}

// mountDev makes a minimal /dev at target: a tmpfs with the host's basic
// character devices bound in, a terminal on stdin as console, the
// /proc/self/fd links and a /dev/shm tmpfs.
func mountDev(target string) error {
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=65536k"); err != nil {
		return fmt.Errorf("mount dev %s: %w", target, err)
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		src := "/dev/" + name
		if _, err := os.Stat(src); err != nil {
			continue
		}
		dst := filepath.Join(target, name)
		if err := ensureTarget(dst, true); err != nil {
			return err
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	bindConsole(target)
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	for _, l := range links {
		if err := os.Symlink(l[0], filepath.Join(target, l[1])); err != nil {
			return fmt.Errorf("dev: %w", err)
		}
	}
	shm := filepath.Join(target, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := unix.Mount("tmpfs", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount %s: %w", shm, err)
	}
	return nil
}

// bindConsole binds a terminal on stdin at /dev/console in the dev dir
// target, as bwrap does, so that tty(1) names it. The terminal is bound by
// its path: a mount reached through the descriptor belongs to the parent's
// mount namespace and cannot be bound. Without a terminal or its path it
// does nothing.
func bindConsole(target string) {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err != nil {
		return
	}
	name, err := os.Readlink("/proc/self/fd/0")
	if err != nil || !strings.HasPrefix(name, "/dev/") {
		return
	}
	console := filepath.Join(target, "console")
	if ensureTarget(console, true) != nil {
		return
	}
	if unix.Mount(name, console, "", unix.MS_BIND, "") != nil {
		_ = os.Remove(console)
	}
}

// loopbackUp brings lo up in the new network namespace, as bwrap does, so
// that the command can talk to itself but to nothing else.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// enterRoot makes newroot the root: pivot_root, with the old root stacked
// on top of it and detached, or chroot where pivot_root is refused (an
// initramfs root).
func enterRoot(newroot string) error {
	if err := unix.Chdir(newroot); err != nil {
		return fmt.Errorf("chdir %s: %w", newroot, err)
	}
	if err := unix.PivotRoot(".", "."); err == nil {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach old root: %w", err)
		}
	} else if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot %s: %w", newroot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// lookPath finds name in the PATH of env, inside the new root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	dirs := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			dirs = v
		}
	}
	for _, dir := range filepath.SplitList(dirs) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: not found in PATH %s", name, dirs)
}
