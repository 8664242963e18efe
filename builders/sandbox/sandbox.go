// Package sandbox runs commands isolated in Linux namespaces, jailed in an
// image root or in the builder environment with the image at /mnt/image.
package sandbox

import (
	"context"
	"errors"
	"io"
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
	Root    string // image root on the host
	Jail    bool   // true: Root is "/"; false: host tools, Root at /mnt/image
	Network bool   // false: an empty network namespace
	Args    []string
	Env     []string // the complete environment ("K=V")
	Dir     string   // working directory inside; default "/"
	Binds   []Bind
	TmpDir  string // host dir mounted at /tmp (jailed) so callers can watch it; "" = private tmpfs
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Timeout time.Duration // 0: none
}

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

// New returns the best available backend.
func New() (Sandbox, error) { return nil, errors.New("sandbox: not implemented") }
