package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// terminal is the master side of a pty, with everything read from it.
type terminal struct {
	master *os.File
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

// newTerminal opens a pty and returns the terminal and its slave end, the
// stdio of the sandboxed command.
func newTerminal(t *testing.T) (*terminal, *os.File) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{master: master, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		slave.Close()
		master.Close()
		<-term.done
	})
	return term, slave
}

func (term *terminal) String() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// waitFor polls until the output contains s.
func (term *terminal) waitFor(t *testing.T, ctx context.Context, s string) {
	t.Helper()
	for !strings.Contains(term.String(), s) {
		if ctx.Err() != nil {
			t.Fatalf("terminal output %q: no %q", term.String(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ttyBackends are the backends that support Spec.TTY.
func forEachTTYBackend(t *testing.T, f func(t *testing.T, sb sandbox.Sandbox)) {
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		f(t, sb)
	})
}

func TestTTYControllingTerminal(t *testing.T) {
	forEachTTYBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		tests := []struct {
			tty  bool
			want string
		}{
			{tty: true, want: "ctty=yes"},
			{tty: false, want: "ctty=no"},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("tty=%v", tc.tty), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
				defer cancel()
				term, slave := newTerminal(t)
				// Field 7 of /proc/PID/stat is the controlling terminal.
				script := `tty; if [ "$(cut -d' ' -f7 /proc/$$/stat)" != 0 ]; then echo ctty=yes; else echo ctty=no; fi`
				s := sandbox.Spec{
					Root: testutil.BusyboxRoot(t, false), Jail: true, TTY: tc.tty,
					Args: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/bin"},
					Stdin: slave, Stdout: slave, Stderr: slave,
				}
				if err := sb.Run(ctx, s); err != nil {
					t.Fatalf("Run() = %v (output %q)", err, term)
				}
				term.waitFor(t, ctx, tc.want)
				if tc.tty && strings.Contains(term.String(), "not a tty") {
					t.Errorf("output %q, want a tty", term)
				}
			})
		}
	})
}

// TestTTYJobControl types Ctrl-C at an interactive shell running a
// foreground sleep: the sleep dies, the shell lives on.
func TestTTYJobControl(t *testing.T) {
	forEachTTYBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		term, slave := newTerminal(t)
		s := sandbox.Spec{
			Root: testutil.BusyboxRoot(t, false), Jail: true, TTY: true,
			Args: []string{"/bin/sh", "-i"}, Env: []string{"PATH=/bin", "PS1=prompt$ "},
			Stdin: slave, Stdout: slave, Stderr: slave,
		}
		done := make(chan error, 1)
		go func() { done <- sb.Run(ctx, s) }()
		term.waitFor(t, ctx, "prompt$ ")
		write(t, term.master, "sleep 1000\n")
		waitForProc(t, ctx, "sleep\x001000")
		write(t, term.master, "\x03")
		// Ctrl-C went to the foreground job, not to the shell.
		for ctx.Err() == nil && len(procsWith(t, "sleep\x001000")) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		write(t, term.master, "echo alive-$((20+22)); exit 3\n")
		term.waitFor(t, ctx, "alive-42")
		var ee *sandbox.ExitError
		if err := <-done; !errors.As(err, &ee) || ee.Code != 3 {
			t.Errorf("Run() = %v, want exit status 3 (output %q)", err, term)
		}
	})
}

// TestTTYCancel checks that cancelling a run with a terminal still kills
// every process of the sandbox.
func TestTTYCancel(t *testing.T) {
	forEachTTYBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		_, slave := newTerminal(t)
		marker := fmt.Sprintf("imsbuild-tty-%d", time.Now().UnixNano())
		s := sandbox.Spec{
			Root: testutil.BusyboxRoot(t, false), Jail: true, TTY: true,
			Args:  []string{"/bin/sh", "-c", "sh -c 'sleep 1000; :' " + marker + " & sleep 1000"},
			Env:   []string{"PATH=/bin"},
			Stdin: slave, Stdout: slave, Stderr: slave,
		}
		go func() {
			waitFor(t, ctx, marker)
			cancel()
		}()
		if err := sb.Run(ctx, s); !errors.Is(err, context.Canceled) {
			t.Errorf("Run() = %v, want %v", err, context.Canceled)
		}
		if pids := procsWith(t, marker); len(pids) > 0 {
			t.Errorf("processes %v outlived Run", pids)
		}
	})
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

// waitForProc polls until a process whose command line starts with prefix
// runs.
func waitForProc(t *testing.T, ctx context.Context, prefix string) {
	t.Helper()
	for ctx.Err() == nil {
		for _, pid := range procsWith(t, prefix) {
			if strings.HasPrefix(cmdline(pid), prefix) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no process %q", prefix)
}

// TestTTYWindowSize checks that the command sees the terminal's size, and a
// new size once the terminal is resized (as an SSH window change does).
func TestTTYWindowSize(t *testing.T) {
	forEachTTYBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		term, slave := newTerminal(t)
		if err := pty.Setsize(term.master, &pty.Winsize{Rows: 33, Cols: 101}); err != nil {
			t.Fatal(err)
		}
		s := sandbox.Spec{
			Root: testutil.BusyboxRoot(t, false), Jail: true, TTY: true,
			Args: []string{"/bin/sh", "-i"}, Env: []string{"PATH=/bin", "PS1=prompt$ "},
			Stdin: slave, Stdout: slave, Stderr: slave,
		}
		done := make(chan error, 1)
		go func() { done <- sb.Run(ctx, s) }()
		term.waitFor(t, ctx, "prompt$ ")
		write(t, term.master, "stty size\n")
		term.waitFor(t, ctx, "33 101")
		if err := pty.Setsize(term.master, &pty.Winsize{Rows: 44, Cols: 120}); err != nil {
			t.Fatal(err)
		}
		// The new size travels by SIGWINCH (through runc's relay for runc):
		// ask again until it lands.
		for !strings.Contains(term.String(), "44 120") {
			if ctx.Err() != nil {
				t.Fatalf("terminal output %q: the resize never arrived", term)
			}
			write(t, term.master, "stty size\n")
			time.Sleep(50 * time.Millisecond)
		}
		write(t, term.master, "exit 0\n")
		if err := <-done; err != nil {
			t.Errorf("Run() = %v (output %q)", err, term)
		}
	})
}
