package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/threadpin"
	"github.com/imsbuild/imsbuild/internal/toolpath"
)

// Tool is the name of the server binary, as IMSBUILD_TEST_REQUIRE names it.
const Tool = "versitygw"

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Server is a running S3 server.
type Server struct {
	Endpoint  string // http://127.0.0.1:<port>
	AccessKey string
	SecretKey string
	Region    string

	t    testing.TB
	bin  string
	addr string // 127.0.0.1:<port>
	data string // the posix backend's root; one dir per bucket
	log  string // server stdout+stderr
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a server and registers its shutdown with t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("s3 server tests skipped in -short mode")
	}
	dir := t.TempDir()
	s := &Server{
		AccessKey: "imsbuildtest",
		SecretKey: "imsbuildtest-secret",
		Region:    "us-east-1",
		t:         t,
		bin:       lookBinary(t),
		data:      filepath.Join(dir, "data"),
		log:       filepath.Join(dir, "server.log"),
	}
	if err := os.MkdirAll(s.data, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	// A freed port can be taken by someone else before the server binds it:
	// try a few.
	var err error
	for range 3 {
		s.addr, err = freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if err = s.start(); err == nil {
			s.Endpoint = "http://" + s.addr
			return s
		}
	}
	t.Fatalf("start %s: %v", Tool, err)
	return nil
}

// lookBinary finds versitygw on PATH or in $GOPATH/bin, else skips or fails
// the test as testutil.RequireTool does.
func lookBinary(t testing.TB) string {
	t.Helper()
	if p, err := toolpath.Look(Tool); err == nil {
		return p
	}
	return testutil.RequireTool(t, Tool)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs the server on s.addr and waits until it answers HTTP.
func (s *Server) start() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.bin,
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--region", s.Region,
		"--port", s.addr,
		"--quiet",
		"posix", s.data)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release, err := threadpin.Start(cmd) // see threadpin: Pdeathsig is per thread
	if err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); release(); close(done) }()
	s.cmd, s.done = cmd, done

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("%s exited on start: %s", Tool, s.logTail())
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("%s did not answer on %s within %v: %s", Tool, s.addr, startTimeout, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get("http://" + s.addr + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
	}
}

// logTail returns the end of the server log for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// Stop stops the server (SIGTERM, then SIGKILL after a timeout). The data
// directory and the port are kept for Restart. Stop is idempotent.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.kill()
	}
	s.cmd = nil
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port with the same data, after
// Stop (or stops it first).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The old socket may linger briefly; retry binding for a few seconds.
	deadline := time.Now().Add(startTimeout)
	for {
		if err = s.start(); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("restart %s: %v", Tool, err)
	}
}

// Port returns the server's TCP port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Client returns an S3 client for the server (path-style, static credentials,
// no retries so that tests see failures at once).
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		Retryer:      aws.NopRetryer{},
	})
}

// CreateBucket creates bucket name.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client(t).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}
