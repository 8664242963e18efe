package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// Bind is an extra bind mount into the sandbox.
type Bind struct {
	Source   string // host path
	Dest     string // path inside the sandbox
	ReadOnly bool
}

// Spec is one command to run.
type Spec struct {
	Root string // image root on the host
	Jail bool   // true: Root is "/"; false: builder tools, Root at /mnt/image
	// BuilderRoot is the builder environment of a non-jailed run: an
	// unpacked root (an OCI image's rootfs) mounted read-only as "/". Empty:
	// the host root, read-only. Ignored when Jail is set.
	BuilderRoot string
	Network     bool // false: an empty network namespace
	Args        []string
	Env         []string // the complete environment ("K=V")
	Dir         string   // working directory inside; default "/"
	Binds       []Bind
	TmpDir      string // host dir mounted at /tmp (jailed) so callers can watch it; "" = private tmpfs
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
	// Notices receives what the sandbox says about how it runs (without
	// a pids cgroup of its own in an unprivileged container): the step's
	// log when Stderr is a person's terminal. nil: Stderr.
	Notices io.Writer
	// TTY makes Stdin the controlling terminal of the command when it is a
	// terminal (an *os.File), so that Ctrl-C, job control and window size
	// changes work in interactive shells. Under runc the command gets a pty
	// of its own that runc relays to Stdin, resized as Stdin is.
	TTY bool
	// Privileged runs the command like "docker run --privileged": every
	// capability, no seccomp filter, access to every device, the host's
	// /dev bound recursively, /sys mounted, and no masked or read-only
	// /proc paths, so that it can mount and make device nodes (kiwi-ng
	// binds /proc, /sys and /dev into the roots it builds). Its mounts
	// still stay in the sandbox's mount namespace. Only the runc backend
	// supports it; the others return [ErrPrivileged].
	Privileged bool
	Timeout    time.Duration // 0: none
	// PidsLimit is how many processes and threads the sandbox may have at
	// once (its pids cgroup); 0 means [DefaultPidsLimit].
	PidsLimit int
	// TmpSize is the size in bytes of the private /tmp tmpfs; 0 means
	// [DefaultTmpSize]. Unused with TmpDir.
	TmpSize int64
}

// notices returns where the sandbox's notes about itself go.
func (s Spec) notices() io.Writer {
	if s.Notices != nil {
		return s.Notices
	}
	return s.Stderr
}

// pidsLimit returns the pids limit of s.
func (s Spec) pidsLimit() int {
	if s.PidsLimit > 0 {
		return s.PidsLimit
	}
	return DefaultPidsLimit
}

// ErrPrivileged is returned by the backends that cannot run a
// [Spec.Privileged] command.
var ErrPrivileged = errors.New("sandbox: privileged runs need the runc backend")

// ExitError is a command that ran and exited non-zero.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return "exit status " + itoa(e.Code) }

func itoa(i int) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// ErrTimeout is returned when Spec.Timeout passes.
var ErrTimeout = errors.New("sandbox: timeout")

// Sandbox runs commands in isolation.
type Sandbox interface {
	Name() string
	Run(ctx context.Context, s Spec) error
}

// Backend names accepted by [Open].
const (
	BackendAuto   = "auto"
	BackendBwrap  = "bwrap"
	BackendNative = "native"
	BackendRunc   = "runc"
)

// New returns the best available backend: bubblewrap when installed, else the
// native backend when running as root.
func New() (Sandbox, error) { return Open(BackendAuto) }

// Open returns the backend called name: "bwrap", "native", "runc", or "auto"
// (or "") for the best available one. "auto" never picks runc.
func Open(name string) (Sandbox, error) {
	switch name {
	case "", BackendAuto:
		// bwrap as root without CAP_SYS_ADMIN cannot make its
		// namespaces, and as an unprivileged user it maps only its own
		// uid: the native backend's user namespace maps them all.
		if unprivilegedRoot() {
			return Open(BackendNative)
		}
		if sb, err := Open(BackendBwrap); err == nil {
			return sb, nil
		}
		if sb, err := Open(BackendNative); err == nil {
			return sb, nil
		}
		return nil, errors.New("sandbox: no backend available: install bubblewrap or run as root")
	case BackendBwrap:
		p, err := exec.LookPath("bwrap")
		if err != nil {
			return nil, fmt.Errorf("sandbox bwrap: %w", err)
		}
		return NewBwrap(p), nil
	case BackendNative:
		if os.Geteuid() != 0 {
			return nil, errors.New("sandbox native: needs root")
		}
		return NewNative(), nil
	case BackendRunc:
		p, err := exec.LookPath("runc")
		if err != nil {
			return nil, fmt.Errorf("sandbox runc: %w", err)
		}
		if os.Geteuid() != 0 {
			return nil, errors.New("sandbox runc: needs root")
		}
		return NewRunc(p)
	}
	return nil, fmt.Errorf("sandbox: unknown backend %q (want auto, bwrap, native or runc)", name)
}
