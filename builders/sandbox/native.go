package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Native is the backend without external tools: it re-executes the current
// binary (/proc/self/exe) in new namespaces with [InitArg], and [MaybeRunInit]
// mounts the sandbox and executes the command as the PID namespace's init.
// It needs root.
//
// Root without CAP_SYS_ADMIN (an unprivileged container) cannot make those
// namespaces: the native backend then makes a user namespace that maps
// every id to itself first, binds the container's /proc instead of
// mounting a new one (the kernel refuses a fresh procfs in a user
// namespace while the container's has masked paths) and so shares the
// container's PID namespace, finds its processes by their user namespace
// to kill them at the end, and runs without a pids cgroup of its own,
// which it says in the step's log (see userns.go).
type Native struct {
	exe    string
	userNS bool // root without CAP_SYS_ADMIN: new user namespace, the container's /proc and PIDs, no pids cgroup
}

// NewNative returns the native backend.
func NewNative() *Native { return &Native{exe: "/proc/self/exe", userNS: unprivilegedRoot()} }

// Name returns "native".
func (n *Native) Name() string { return BackendNative }

// initSpec is what the parent tells the init process, as JSON in specEnv.
type initSpec struct {
	Jail    bool     `json:"jail"`
	Root    string   `json:"root"`    // the image root (jailed)
	Staging string   `json:"staging"` // an empty host dir to assemble the new root in (non-jailed)
	Base    string   `json:"base"`    // the builder root bound read-only at Staging; "" = the host root
	TTY     bool     `json:"tty"`     // stdin is the controlling terminal: run the command in the foreground
	Mounts  []mount  `json:"mounts"`
	Network bool     `json:"network"`
	Args    []string `json:"args"`
	Env     []string `json:"env"`
	Dir     string   `json:"dir"`
	// UserNS: init runs in a user namespace of an unprivileged container,
	// in the container's PID namespace: it binds the container's /proc
	// instead of mounting a new procfs, and adopts the command's orphans.
	UserNS bool `json:"user_ns"`
}

// specEnv is the environment variable carrying the initSpec.
const specEnv = "IMSBUILD_SANDBOX_SPEC"

// Run runs s in a re-executed copy of the current binary.
func (n *Native) Run(ctx context.Context, s Spec) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.Privileged {
		return ErrPrivileged
	}
	p, err := newPlan(s)
	defer func() { err = withCleanup(err, p.cleanup()) }()
	if err != nil {
		return err
	}
	is := initSpec{Jail: s.Jail, Root: s.Root, Mounts: p.mounts, Network: s.Network,
		Args: s.Args, Env: cleanEnv(s.Env), Dir: workDir(s), TTY: withTTY(s), UserNS: n.userNS}
	if !s.Jail {
		staging, err := os.MkdirTemp("", "imsbuild-sandbox-")
		if err != nil {
			return fmt.Errorf("sandbox native: %w", err)
		}
		defer func() { err = withCleanup(err, removeMountpoint(staging)) }()
		is.Staging, is.Base = staging, s.BuilderRoot
	}
	js, err := json.Marshal(is)
	if err != nil {
		return fmt.Errorf("sandbox native: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox native: %w", err)
	}
	defer statusR.Close()
	cg, err := newPidsCgroup(s.pidsLimit())
	defer func() { err = withCleanup(err, cg.remove()) }()
	if err != nil && n.userNS {
		// The cgroup file system is read-only here: the container's pids
		// limit is the one that holds.
		noPidsCgroup(s.notices(), err)
		if rerr := cg.remove(); rerr != nil {
			return rerr
		}
		cg, err = nil, nil
	} else if err != nil {
		return err
	}

	cmd := exec.Command(n.exe, InitArg)
	cmd.Env = []string{specEnv + "=" + string(js)}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.ExtraFiles = []*os.File{statusW}
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS
	if !n.userNS {
		flags |= syscall.CLONE_NEWPID
	}
	if !s.Network {
		flags |= syscall.CLONE_NEWNET
	}
	cmd.SysProcAttr = procAttr(s)
	if n.userNS {
		flags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: allIDs}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: allIDs}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	}
	cmd.SysProcAttr.Cloneflags = uintptr(flags)
	cmd.WaitDelay = waitDelay

	started := make(chan struct{})
	defer close(started)
	err = startConfined(cmd, cg, started)
	statusW.Close()
	if err != nil {
		return fmt.Errorf("sandbox native: %w", err)
	}
	setup := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(statusR)
		setup <- string(b)
	}()
	// The child is the PID namespace's init: killing it kills the namespace,
	// and the kernel reaps every process in it before the child is reaped.
	// In a user namespace of its own without a PID namespace, every
	// process of the sandbox is killed by that user namespace, now and
	// once the child is gone.
	userNS := ""
	if n.userNS {
		pin, nsErr := pinUserNS(cmd.Process.Pid)
		if nsErr != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("sandbox native: %w", nsErr)
		}
		defer pin.Close()
		userNS = pin.ns
	}
	waitErr, killErr := supervise(ctx, s.Timeout, cmd, func() {
		_ = cmd.Process.Kill()
		killGroup(cmd.Process.Pid)
		if userNS != "" {
			_ = killUserNS(userNS, cmd.Process.Pid)
		}
	})
	if userNS != "" {
		if err := killUserNS(userNS, 0); err != nil {
			return err
		}
	}
	msg := <-setup
	switch {
	case killErr != nil:
		return killErr
	case msg != "":
		return fmt.Errorf("sandbox native: %s", strings.TrimSpace(msg))
	case waitErr == nil:
		return nil
	}
	if code, ok := exitCode(waitErr); ok {
		return &ExitError{Code: code}
	}
	return fmt.Errorf("sandbox native: %w", waitErr)
}
