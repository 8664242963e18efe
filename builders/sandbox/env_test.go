package sandbox_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// lineSignal closes ready when a line starting with prefix is written.
type lineSignal struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	prefix string
	ready  chan struct{}
	once   sync.Once
}

func (l *lineSignal) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for _, line := range strings.Split(l.buf.String(), "\n") {
		if strings.HasPrefix(line, l.prefix) {
			l.once.Do(func() { close(l.ready) })
		}
	}
	return len(p), nil
}

// A script's environment may hold secrets: no process of the sandbox may
// show it on its command line, which every local user can read.
func TestEnvNotOnCommandLine(t *testing.T) {
	const secret = "env-s3cr3t-4711"
	forEachBackend(t, func(t *testing.T, sb sandbox.Sandbox) {
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		stdin, release := io.Pipe()
		out := &lineSignal{prefix: "got ", ready: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			done <- sb.Run(ctx, sandbox.Spec{
				Root:   testutil.BusyboxRoot(t, false),
				Jail:   true,
				Args:   []string{"/bin/sh", "-c", `echo "got $TOKEN"; read x || true`},
				Env:    []string{"PATH=/bin", "TOKEN=" + secret},
				Stdin:  stdin,
				Stdout: out,
			})
		}()
		select {
		case <-out.ready:
		case err := <-done:
			t.Fatalf("Run() = %v before the script ran", err)
		}
		cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range cmdlines {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s shows the environment: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
		release.Close()
		if err := <-done; err != nil {
			t.Fatalf("Run() = %v", err)
		}
		if got := out.buf.String(); got != "got "+secret+"\n" {
			t.Errorf("stdout = %q, want the variable set", got)
		}
	})
}

func TestEnvWithNUL(t *testing.T) {
	testutil.RequireRoot(t)
	sb := sandbox.NewBwrap(testutil.RequireTool(t, "bwrap"))
	_, _, err := shell(t, sb, sandbox.Spec{Root: testutil.BusyboxRoot(t, false), Jail: true,
		Env: []string{"PATH=/bin", "X=a\x00--bind\x00/\x00/host"}}, "test ! -e /host")
	if err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("Run() = %v, want a NUL byte refused", err)
	}
}
