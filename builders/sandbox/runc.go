package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Runc is the OCI runtime backend: each Run generates a bundle whose
// config.json follows the OCI runtime spec and runs it with
// "runc run". A jailed run's bundle root is the image root; a non-jailed one
// has the builder root (Spec.BuilderRoot, or the host root) bound read-only
// as "/" and the image at /mnt/image. It needs root.
//
// Unlike the other backends the command is the PID namespace's init, as in
// "docker run" without --init: signals it has no handler for are ignored
// when sent from inside the sandbox, and orphans are reparented to it.
type Runc struct {
	path  string
	state string // parent of the per-run state and bundle dirs; "" = os.TempDir()
}

// RuncOption configures [NewRunc].
type RuncOption func(*runcOptions) error

type runcOptions struct {
	state string
}

// WithRuncStateDir makes runc keep its bundles and container state under dir
// (one private subdirectory per run, removed afterwards) instead of under
// the system's temporary directory.
func WithRuncStateDir(dir string) RuncOption {
	return func(o *runcOptions) error {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("runc state dir %q: not an absolute path", dir)
		}
		o.state = dir
		return nil
	}
}

// NewRunc returns the OCI runtime backend running the runc (or crun)
// binary at path.
func NewRunc(path string, opts ...RuncOption) (*Runc, error) {
	var o runcOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("sandbox runc: %w", err)
		}
	}
	return &Runc{path: path, state: o.state}, nil
}

// Name returns "runc".
func (r *Runc) Name() string { return BackendRunc }

// runcCleanupTimeout bounds "runc kill" and "runc delete".
const runcCleanupTimeout = 10 * time.Second

// Run runs s in a container of its own. On cancellation or timeout the
// container is killed with "runc kill"; the container, its state and the
// bundle are always deleted before Run returns.
func (r *Runc) Run(ctx context.Context, s Spec) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := newPlan(s)
	defer func() { err = withCleanup(err, p.cleanup()) }()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(r.state, "imsbuild-runc-")
	if err != nil {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	defer func() { err = withCleanup(err, removeBundle(dir)) }()
	b := runcBundle{dir: dir}
	if err := b.write(p, s); err != nil {
		return err
	}
	id, err := containerID()
	if err != nil {
		return err
	}
	defer func() { err = withCleanup(err, r.delete(id, b.state())) }()

	cmd := exec.Command(r.path, "--root", b.state(), "--log", b.log(), "--log-format", "json",
		"run", "--bundle", dir, id)
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.SysProcAttr = procAttr(s) // with a terminal, runc's controlling one: it gets SIGWINCH
	cmd.WaitDelay = waitDelay

	// Pdeathsig fires when the thread that started the process exits.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	exited := make(chan struct{})
	waitErr, killErr := supervise(ctx, s.Timeout, cmd, func() {
		_ = r.command(context.Background(), b.state(), "kill", id, "KILL")
		// runc run exits once the container's init is dead; should it hang,
		// its process group goes too and delete cleans up after it.
		go func() {
			select {
			case <-exited:
			case <-time.After(waitDelay):
				killGroup(cmd.Process.Pid)
			}
		}()
	})
	close(exited)
	if killErr != nil {
		return killErr
	}
	if msg := runcError(b.log()); msg != "" {
		return fmt.Errorf("sandbox runc: %s", msg)
	}
	if waitErr == nil {
		return nil
	}
	if code, ok := exitCode(waitErr); ok {
		return &ExitError{Code: code}
	}
	return fmt.Errorf("sandbox runc: %w", waitErr)
}

// command runs "runc --root state args…" and returns its error with the
// runtime's message.
func (r *Runc) command(ctx context.Context, state string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, runcCleanupTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.path, append([]string{"--root", state}, args...)...)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %s: %s: %w", args[0], bytes.TrimSpace(out), err)
	}
	return nil
}

// delete removes the container id, killing whatever is left of it. A
// container that runc run removed already is not an error.
func (r *Runc) delete(id, state string) error {
	err := r.command(context.Background(), state, "delete", "--force", id)
	if err != nil && !strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("sandbox runc: %w", err)
	}
	return nil
}

// containerID returns a fresh container ID.
func containerID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sandbox runc: %w", err)
	}
	return "imsbuild-" + hex.EncodeToString(b[:]), nil
}

// runcError returns the last error runc logged to the JSON log at name.
func runcError(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	var msg string
	for line := range bytes.Lines(b) {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msg = e.Msg
		}
	}
	return strings.TrimPrefix(msg, "runc run failed: ")
}

// removeBundle removes a run's bundle dir. Its rootfs dir is an empty
// mountpoint inside the container's mount namespace only, so once the
// container is gone the whole tree is ordinary files.
func removeBundle(dir string) error {
	if err := removeMountpoint(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("sandbox cleanup: %w", err)
	}
	return nil
}
