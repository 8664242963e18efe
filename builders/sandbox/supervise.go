package sandbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
)

// waitDelay bounds how long Wait keeps copying output after the sandbox died.
const waitDelay = 5 * time.Second

// supervise waits for the started cmd. When ctx is done or timeout passes it
// calls kill, which must take the whole sandbox down, and waits for cmd.
// It returns the result of cmd.Wait, or why the sandbox was killed.
func supervise(ctx context.Context, timeout time.Duration, cmd *exec.Cmd, kill func()) (waitErr, killErr error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case err := <-done:
		return err, nil
	case <-ctx.Done():
		kill()
		<-done
		return nil, ctx.Err()
	case <-expired:
		kill()
		<-done
		return nil, ErrTimeout
	}
}

// exitCode returns the shell-style exit code of a finished process: its exit
// status, or 128+signal when a signal killed it.
func exitCode(err error) (int, bool) {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, false
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), true
	}
	return ee.ExitCode(), true
}

// killGroup sends SIGKILL to the process group pgid (a leader started with
// Setpgid or Setsid).
func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// cleanEnv drops entries without "=" and keeps the last value of each name,
// at the place of its first occurrence.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	at := make(map[string]int, len(env))
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			continue
		}
		if i, seen := at[k]; seen {
			out[i] = kv
			continue
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// workDir returns the working directory of s inside the sandbox.
func workDir(s Spec) string {
	if s.Dir == "" {
		return "/"
	}
	return s.Dir
}

// withTTY reports whether s asks for a controlling terminal and its stdin is
// one.
func withTTY(s Spec) bool {
	f, ok := s.Stdin.(*os.File)
	return s.TTY && ok && term.IsTerminal(int(f.Fd()))
}

// procAttr returns the attributes of the backend's process: a new process
// group, or with a terminal a new session holding stdin as its controlling
// terminal; either way killGroup kills it. It dies with the thread that
// started it.
func procAttr(s Spec) *syscall.SysProcAttr {
	if withTTY(s) {
		return &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	}
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
