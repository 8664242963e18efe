package sshenv_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/builders/pack"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/builders/sshenv"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// testTimeout bounds every test.
const testTimeout = 60 * time.Second

// TestMain lets the native sandbox backend re-execute the test binary.
func TestMain(m *testing.M) {
	sandbox.MaybeRunInit()
	os.Exit(m.Run())
}

// clientKey is an ed25519 key pair of an SSH client.
type clientKey struct {
	path       string // private key file, mode 0600
	authorized string // authorized_keys line
	signer     ssh.Signer
}

func newClientKey(t testing.TB) clientKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{path: p, authorized: string(ssh.MarshalAuthorizedKey(signer.PublicKey())), signer: signer}
}

// env is a running Serve.
type env struct {
	info   sshenv.Info
	cancel context.CancelFunc
	done   chan struct{}
	err    error // of Serve, once done is closed
}

// start runs Serve with cfg (keys, sandbox, root filled in by the caller)
// and waits until it listens. Cleanup cancels it and waits for its end.
func start(t *testing.T, cfg sshenv.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	e := &env{cancel: cancel, done: make(chan struct{})}
	ready := make(chan sshenv.Info, 1)
	if cfg.Log == nil {
		cfg.Log = testWriter{t}
	}
	go func() {
		defer close(e.done)
		e.err = sshenv.Serve(ctx, cfg, func(i sshenv.Info) { ready <- i })
	}()
	t.Cleanup(func() {
		cancel()
		<-e.done
	})
	select {
	case e.info = <-ready:
	case <-e.done:
		t.Fatalf("Serve() = %v before ready", e.err)
	}
	return e
}

// wait returns the error of Serve, failing the test when it does not end
// within testTimeout.
func (e *env) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-e.done:
		return e.err
	case <-time.After(testTimeout):
		t.Fatal("Serve() did not return")
		return nil
	}
}

// testWriter sends the environment's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// sshArgs are the OpenSSH client options to reach e with key.
func (e *env) sshArgs(key clientKey) []string {
	return []string{
		"-i", key.path, "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		"-o", "ConnectTimeout=20",
	}
}

// ssh returns the command running the real ssh client with args after the
// destination.
func (e *env) ssh(t *testing.T, key clientKey, args ...string) *exec.Cmd {
	t.Helper()
	bin := testutil.RequireTool(t, "ssh")
	a := append(e.sshArgs(key), "-p", strconv.Itoa(e.info.Port), "root@"+e.info.Host)
	cmd := exec.CommandContext(t.Context(), bin, append(a, args...)...)
	cmd.WaitDelay = testTimeout
	return cmd
}

// run runs ssh and returns stdout, stderr and the exit code.
func (e *env) run(t *testing.T, key clientKey, args ...string) (string, string, int) {
	t.Helper()
	cmd := e.ssh(t, key, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := runBounded(t, cmd)
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ssh: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// runBounded runs cmd, killing it after testTimeout.
func runBounded(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(testTimeout):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not end", cmd.Args)
		return nil
	}
}

// dial connects a Go SSH client to e, checking the host key fingerprint.
func (e *env) dial(t *testing.T, key clientKey) *ssh.Client {
	t.Helper()
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(key.signer)},
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			if got := ssh.FingerprintSHA256(k); got != e.info.HostKeyFingerprint {
				return errors.New("host key " + got + ", want " + e.info.HostKeyFingerprint)
			}
			return nil
		},
		Timeout: testTimeout,
	}
	c, err := ssh.Dial("tcp", net.JoinHostPort(e.info.Host, strconv.Itoa(e.info.Port)), cfg)
	if err != nil {
		t.Fatalf("ssh.Dial() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually fails the test unless cond becomes true within testTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostSandbox is a fake sandbox.Sandbox running commands on the host,
// without isolation, in Spec.Root; it exports Spec.TmpDir as SSHENV_TMP. A
// terminal as stdin becomes the controlling terminal of a new session.
type hostSandbox struct{}

func (hostSandbox) Name() string { return "host" }

func (hostSandbox) Run(ctx context.Context, s sandbox.Spec) error {
	cmd := exec.Command(s.Args[0], s.Args[1:]...)
	cmd.Dir = s.Root
	cmd.Env = append(append([]string{}, s.Env...), "SSHENV_TMP="+s.TmpDir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if f, ok := s.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
	// Like the real sandboxes, nothing outlives the command.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return &sandbox.ExitError{Code: code}
	}
	return err
}

// realSandbox returns the bubblewrap sandbox, skipping without root or bwrap.
// overlayRoot returns a busybox root packed and mounted under an overlay,
// as a customize gets its parent; it is unmounted when the test ends, and
// the test fails if that leaves a mount.
func overlayRoot(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	out := t.TempDir()
	arts, err := pack.Pack(t.Context(), testutil.BusyboxRoot(t, false), out, pack.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "overlay")
	r, err := overlay.Mount(arts[0].Path, dir)
	if errors.Is(err, overlay.ErrUnavailable) {
		if req := os.Getenv("IMSBUILD_TEST_REQUIRE"); req == "all" || strings.Contains(req, "overlay") {
			t.Fatalf("overlay is required (IMSBUILD_TEST_REQUIRE): %v", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("unmount the overlay root: %v", err)
		}
		if m, err := overlay.Mounts(dir); err != nil || len(m) > 0 {
			t.Errorf("mounts left: %v %v", m, err)
		}
	})
	return r.Path()
}

func realSandbox(t *testing.T) sandbox.Sandbox {
	t.Helper()
	testutil.RequireRoot(t)
	return sandbox.NewBwrap(testutil.RequireTool(t, "bwrap"))
}

// readUntil reads r into buf in the background.
func readInto(r io.Reader) *testutil.SyncBuffer {
	b := &testutil.SyncBuffer{}
	go func() { _, _ = io.Copy(b, r) }()
	return b
}

// execTool returns a command running bin, bounded by the test.
func execTool(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.WaitDelay = testTimeout
	return cmd
}

// dial0 opens a TCP connection to e's address.
func (e *env) dial0() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(e.info.Host, strconv.Itoa(e.info.Port)), time.Second)
	if err == nil {
		c.Close()
	}
	return c, err
}

// net127 is an address to ask a port forward to.
func net127(e *env) string { return net.JoinHostPort(e.info.Host, strconv.Itoa(e.info.Port)) }
