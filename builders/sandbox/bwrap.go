package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Bwrap is the bubblewrap backend.
type Bwrap struct {
	path string
}

// NewBwrap returns the bubblewrap backend running the bwrap binary at path.
func NewBwrap(path string) *Bwrap { return &Bwrap{path: path} }

// Name returns "bwrap".
func (b *Bwrap) Name() string { return BackendBwrap }

// mountRaceAttempts bounds the starts of one Run that bwrap fails in a
// race with the host's mount table (see mountRace).
const mountRaceAttempts = 3

// Run runs s under bwrap. The PID namespace's init (bwrap's child) is
// watched through a pidfd, so that on cancellation or timeout the whole
// namespace is killed and waited for.
func (b *Bwrap) Run(ctx context.Context, s Spec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.Privileged {
		return ErrPrivileged
	}
	for attempt := 1; ; attempt++ {
		err := b.run(ctx, s)
		var race *mountRaceError
		if !errors.As(err, &race) || attempt == mountRaceAttempts || !restartable(s) {
			return err
		}
		if s.Stderr != nil {
			fmt.Fprintf(s.Stderr, "imsbuild: a mount under the host root went away while bwrap bound it; starting it again\n")
		}
	}
}

// mountRaceError is bwrap failing before the command ran because a mount
// below a path it binds with its submounts (the host root of a non-jailed
// sandbox) went away while it remounted them: another step's overlay
// unmounted meanwhile. bwrap lists the submounts after the bind, then
// remounts each with the bind's flags, and a vanished one fails that.
type mountRaceError struct{ msg string }

func (e *mountRaceError) Error() string { return "sandbox bwrap: " + e.msg }

// mountRace reports whether msg, bwrap's last line of a start that ran no
// command, is the race of mountRaceError (bwrap's bind_mount errors
// BIND_MOUNT_ERROR_REMOUNT_SUBMOUNT with ENOENT and
// BIND_MOUNT_ERROR_FIND_DEST_MOUNT).
func mountRace(msg string) bool {
	if !strings.HasPrefix(msg, "Can't bind mount ") {
		return false
	}
	return strings.Contains(msg, "Unable to apply mount flags: remount ") && strings.HasSuffix(msg, ": No such file or directory") ||
		strings.Contains(msg, "in mount table")
}

// restartable reports whether a Run of s can start again after a start
// that ran no command: its stdin, if any, is a file that bwrap's child
// reads directly, not a reader whose bytes a copying goroutine may already
// have taken.
func restartable(s Spec) bool {
	if s.Stdin == nil {
		return true
	}
	_, ok := s.Stdin.(*os.File)
	return ok
}

// run is one start of s under bwrap.
func (b *Bwrap) run(ctx context.Context, s Spec) (err error) {
	p, err := newPlan(s)
	defer func() { err = withCleanup(err, p.cleanup()) }()
	if err != nil {
		return err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox bwrap: %w", err)
	}
	defer statusR.Close()
	// The environment reaches bwrap as --setenv arguments read from a
	// pipe (--args 4), not its command line: any local user can read a
	// process's command line, and a script's environment may hold secrets.
	// (bwrap's own environment is no way: it would apply to bwrap, so
	// LD_PRELOAD from a build file would run on the host.)
	env, err := envArgs(s.Env)
	if err != nil {
		return err
	}
	envR, envW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox bwrap: %w", err)
	}
	defer envR.Close()
	defer envW.Close()
	filter, err := filterPipe()
	if err != nil {
		return err
	}
	defer filter.Close()
	cg, err := newPidsCgroup(s.pidsLimit())
	defer func() { err = withCleanup(err, cg.remove()) }()
	if err != nil {
		return err
	}

	tail := &tailWriter{}
	cmd := exec.Command(b.path, bwrapArgs(p, s)...)
	cmd.Env = []string{}
	cmd.Stdin = s.Stdin
	cmd.Stdout = s.Stdout
	cmd.Stderr = tail
	if s.Stderr != nil {
		cmd.Stderr = io.MultiWriter(s.Stderr, tail)
	}
	cmd.ExtraFiles = []*os.File{statusW, envR, filter} // fds 3, 4 and 5
	cmd.SysProcAttr = procAttr(s)
	cmd.WaitDelay = waitDelay

	started := make(chan struct{})
	defer close(started)
	err = startConfined(cmd, cg, started)
	statusW.Close()
	envR.Close()
	filter.Close()
	if err != nil {
		return fmt.Errorf("sandbox bwrap: %w", err)
	}
	// bwrap reads the arguments before it starts anything; a write error
	// means it died, which Wait reports.
	go func() {
		_, _ = envW.Write(env)
		envW.Close()
	}()
	st := &bwrapStatus{pidfd: -1, done: make(chan struct{})}
	go st.read(statusR)
	waitErr, killErr := supervise(ctx, s.Timeout, cmd, func() {
		st.kill()
		killGroup(cmd.Process.Pid)
	})
	_ = statusR.SetReadDeadline(time.Now().Add(waitDelay))
	exit, hasExit := st.finish()
	switch {
	case killErr != nil:
		return killErr
	case hasExit && exit == 0:
		return nil
	case hasExit:
		return &ExitError{Code: exit}
	case waitErr == nil:
		return nil
	}
	if msg := tail.lastLine(); msg != "" {
		msg = strings.TrimPrefix(msg, "bwrap: ")
		if mountRace(msg) {
			return &mountRaceError{msg: msg}
		}
		return fmt.Errorf("sandbox bwrap: %s", msg)
	}
	return fmt.Errorf("sandbox bwrap: %w", waitErr)
}

// withCleanup adds the error of a deferred cleanup to err.
func withCleanup(err, cerr error) error {
	switch {
	case cerr == nil:
		return err
	case err == nil:
		return cerr
	}
	return errors.Join(err, cerr)
}

// bwrapArgs translates a plan into bwrap's command line.
func bwrapArgs(p *plan, s Spec) []string {
	var a []string
	switch {
	case p.jail:
		a = append(a, "--bind", p.root, "/")
	case p.base != "":
		a = append(a, "--ro-bind", p.base, "/")
	default:
		a = append(a, "--ro-bind", "/", "/")
	}
	for _, m := range p.mounts {
		switch m.Kind {
		case kindProc:
			a = append(a, "--proc", m.Dest)
			// The host-wide knobs a root without CAP_SYS_ADMIN could still
			// write, bound read-only from the host's /proc (same kernel).
			for _, name := range procReadOnlyPaths {
				a = append(a, "--ro-bind-try", path.Join("/proc", name), path.Join(m.Dest, name))
			}
		case kindDev:
			a = append(a, "--dev", m.Dest)
		case kindTmpfs:
			if m.Mode != "" {
				a = append(a, "--perms", m.Mode)
			}
			if m.Size > 0 {
				a = append(a, "--size", strconv.FormatInt(m.Size, 10))
			}
			a = append(a, "--tmpfs", m.Dest)
		case kindBind:
			op := "--bind"
			if m.ReadOnly {
				op = "--ro-bind"
			}
			a = append(a, op, m.Source, m.Dest)
		}
	}
	a = append(a, "--unshare-pid", "--unshare-ipc", "--unshare-uts")
	if !s.Network {
		a = append(a, "--unshare-net")
	}
	a = append(a, "--die-with-parent", "--cap-drop", "ALL")
	for _, c := range confinedCapNames() {
		a = append(a, "--cap-add", c)
	}
	// bwrap loads the filter and sets no_new_privs right before it
	// executes the command. Run as root it leaves the bounding set alone;
	// with no_new_privs no exec can regain what --cap-drop took.
	a = append(a, "--seccomp", "5")
	if !withTTY(s) {
		a = append(a, "--new-session")
	}
	a = append(a, "--hostname", Hostname, "--clearenv", "--args", "4") // envArgs
	a = append(a, "--chdir", workDir(s), "--json-status-fd", "3", "--")
	return append(a, s.Args...)
}

// envArgs returns the --setenv arguments of env, NUL-separated for --args.
// A NUL inside a variable would smuggle in arguments of its own, so it is
// refused (exec refuses it in an environment too).
func envArgs(env []string) ([]byte, error) {
	var b bytes.Buffer
	for _, kv := range cleanEnv(env) {
		if strings.IndexByte(kv, 0) >= 0 {
			return nil, fmt.Errorf("sandbox bwrap: environment variable %q contains a NUL byte", strings.SplitN(kv, "=", 2)[0])
		}
		k, v, _ := strings.Cut(kv, "=")
		for _, arg := range []string{"--setenv", k, v} {
			b.WriteString(arg)
			b.WriteByte(0)
		}
	}
	return b.Bytes(), nil
}

// filterPipe returns a pipe holding the seccomp filter for bwrap --seccomp,
// its write end closed (a filter is far smaller than the pipe buffer).
func filterPipe() (*os.File, error) {
	raw, err := seccompFilter()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	_, err = w.Write(sockFilterBytes(raw))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("sandbox seccomp filter: %w", err)
	}
	return r, nil
}

// bwrapStatus follows bwrap's --json-status-fd reports: the PID of the
// namespace's init, then the command's exit code.
type bwrapStatus struct {
	mu      sync.Mutex
	pidfd   int // of the PID namespace's init; -1 until reported
	killed  bool
	exit    int
	hasExit bool
	done    chan struct{}
}

func (st *bwrapStatus) read(r io.Reader) {
	defer close(st.done)
	dec := json.NewDecoder(r)
	for {
		var m struct {
			ChildPID *int `json:"child-pid"`
			ExitCode *int `json:"exit-code"`
		}
		if dec.Decode(&m) != nil {
			return
		}
		st.mu.Lock()
		if m.ChildPID != nil && st.pidfd < 0 {
			if fd, err := unix.PidfdOpen(*m.ChildPID, 0); err == nil {
				st.pidfd = fd
				if st.killed {
					_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
				}
			}
		}
		if m.ExitCode != nil {
			st.exit, st.hasExit = *m.ExitCode, true
		}
		st.mu.Unlock()
	}
}

// kill sends SIGKILL to the namespace's init, which takes every process of
// the namespace with it.
func (st *bwrapStatus) kill() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.killed = true
	if st.pidfd >= 0 {
		_ = unix.PidfdSendSignal(st.pidfd, unix.SIGKILL, nil, 0)
	}
}

// finish waits for the status stream to end and for the namespace's init to
// be gone; the kernel reaps every other process of the namespace before.
func (st *bwrapStatus) finish() (exit int, hasExit bool) {
	<-st.done
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pidfd >= 0 {
		if st.killed {
			_ = unix.PidfdSendSignal(st.pidfd, unix.SIGKILL, nil, 0)
		}
		waitPidfd(st.pidfd, waitDelay)
		unix.Close(st.pidfd)
		st.pidfd = -1
	}
	return st.exit, st.hasExit
}

// waitPidfd waits until the process of pidfd has exited, at most d.
func waitPidfd(pidfd int, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n > 0 {
			return
		}
	}
}

// tailWriter keeps the end of what bwrap writes to stderr, to explain a
// failure of bwrap itself.
type tailWriter struct {
	buf []byte
}

const tailSize = 1024

func (w *tailWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	if len(w.buf) > tailSize {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-tailSize:]...)
	}
	return len(b), nil
}

func (w *tailWriter) lastLine() string {
	s := strings.TrimRight(string(w.buf), "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
