package localproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/imsbuild/imsbuild/executor"
)

// Executor runs steps as local processes. It is safe for concurrent use.
type Executor struct {
	binary string
	dir    string
	grace  time.Duration
	onRun  func(executor.Step)
}

// Option configures an Executor.
type Option func(*Executor)

// WithDir runs steps in dir (default: the current directory).
func WithDir(dir string) Option { return func(x *Executor) { x.dir = dir } }

// WithGrace is how long a cancelled step has between SIGTERM (run-step
// then removes its scratch space) and SIGKILL; default 10s.
func WithGrace(d time.Duration) Option { return func(x *Executor) { x.grace = d } }

// WithOnRun calls f with every step before it runs (tests count them).
func WithOnRun(f func(executor.Step)) Option { return func(x *Executor) { x.onRun = f } }

// New returns an executor that runs binary; "" is this program
// (os.Executable).
func New(binary string, opts ...Option) (*Executor, error) {
	if binary == "" {
		b, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("local executor: %w", err)
		}
		binary = b
	}
	x := &Executor{binary: binary, grace: defaultGrace}
	for _, o := range opts {
		o(x)
	}
	return x, nil
}

var _ executor.Executor = (*Executor)(nil)

const defaultGrace = 10 * time.Second

// Run runs s.Args to completion in a process group of its own. Cancelling
// ctx sends the group SIGTERM, and SIGKILL to whatever is left after the
// grace period (the step's sandboxes with it). A non-zero exit is an error
// naming the step and the status.
func (x *Executor) Run(ctx context.Context, s executor.Step) error {
	if x.onRun != nil {
		x.onRun(s)
	}
	cmd := exec.CommandContext(ctx, x.binary, s.Args...)
	cmd.Dir = x.dir
	cmd.Env = environ(s)
	// Marker lines are not for people; the process's exit is seen at
	// once, so a stored marker need not end the step earlier.
	out := executor.NewFilter(writerOrDiscard(s.Log), executor.Markers{})
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = x.grace // then the leader is killed and its output closed
	err := cmd.Run()
	_ = out.Flush()
	if ctx.Err() != nil {
		// The rest of the group, if any: a group's id is not reused
		// while it has members.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return fmt.Errorf("step %s: %w", s.Step, context.Cause(ctx))
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return fmt.Errorf("step %s: imsbuild %s", s.Step, ee.ProcessState)
	}
	if err != nil {
		return fmt.Errorf("step %s: %w", s.Step, err)
	}
	return nil
}

// inherited are the variables of ours a step gets: PATH (to find the
// tools), HOME (the Docker config of an oci:// cache) and TMPDIR (where
// run-step makes its scratch space).
var inherited = []string{"PATH", "HOME", "TMPDIR"}

// environ is the step's environment: the inherited variables that are
// set, Env, then SecretEnv, which nothing else sees.
func environ(s executor.Step) []string {
	var env []string
	for _, k := range inherited {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	for _, m := range []map[string]string{s.Env, s.SecretEnv} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			env = append(env, k+"="+m[k])
		}
	}
	return env
}

func writerOrDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
