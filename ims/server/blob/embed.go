package blob

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/internal/threadpin"
	"github.com/imsbuild/imsbuild/internal/toolpath"
)

// Gateway is the S3 server Embedded runs.
const Gateway = "versitygw"

// Credentials are the keys of the embedded S3 endpoint, kept in
// <dir>/credentials.json (mode 0600).
type Credentials struct {
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
	Region    string `json:"region"`
}

// Embedded is a versitygw child process serving a posix directory on a
// loopback port.
type Embedded struct {
	Endpoint        string // http://127.0.0.1:<port>
	Credentials     Credentials
	CredentialsFile string
	LogFile         string

	cmd  *exec.Cmd
	done chan struct{}
}

// LookGateway finds versitygw on PATH or in $GOPATH/bin (where
// scripts/setup-tools.sh installs it).
func LookGateway() (string, error) {
	p, err := toolpath.Look(Gateway)
	if err != nil {
		return "", fmt.Errorf("%w (scripts/setup-tools.sh installs it; or pass --s3-endpoint)", err)
	}
	return p, nil
}

// StartEmbedded runs versitygw with its posix backend on <dir>/data,
// listening on a free 127.0.0.1 port, with the credentials of
// <dir>/credentials.json (generated the first time). It dies with this
// process; Stop stops it earlier.
func StartEmbedded(ctx context.Context, dir string) (*Embedded, error) {
	bin, err := LookGateway()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("embedded s3: %w", err)
	}
	e := &Embedded{CredentialsFile: filepath.Join(dir, "credentials.json"), LogFile: filepath.Join(dir, "versitygw.log")}
	if e.Credentials, err = loadCredentials(e.CredentialsFile); err != nil {
		return nil, err
	}
	// A port found free can be taken before versitygw binds it: try a few.
	for range 3 {
		if err = e.start(ctx, bin, dir); err == nil {
			return e, nil
		}
	}
	return nil, err
}

func loadCredentials(path string) (Credentials, error) {
	var c Credentials
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &c); err != nil || c.AccessKey == "" || c.SecretKey == "" {
			return c, fmt.Errorf("embedded s3 credentials %s: not the expected JSON (remove it to generate new ones)", path)
		}
		if c.Region == "" {
			c.Region = "us-east-1"
		}
		return c, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("embedded s3 credentials: %w", err)
	}
	c = Credentials{AccessKey: "imsbuild-" + randomHex(6), SecretKey: randomHex(24), Region: "us-east-1"}
	data, _ = json.MarshalIndent(c, "", "  ")
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return c, fmt.Errorf("embedded s3 credentials: %w", err)
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *Embedded) start(ctx context.Context, bin, dir string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("embedded s3: find a free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.OpenFile(e.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("embedded s3: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", filepath.Join(dir, "data"))
	// Keys in the environment, not argv, so ps does not show them.
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY="+e.Credentials.AccessKey,
		"ROOT_SECRET_KEY="+e.Credentials.SecretKey,
		"VGW_REGION="+e.Credentials.Region)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release, err := threadpin.Start(cmd) // see threadpin: Pdeathsig is per thread
	if err != nil {
		return fmt.Errorf("embedded s3: start %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); release(); close(done) }()
	e.cmd, e.done, e.Endpoint = cmd, done, "http://"+addr

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			return fmt.Errorf("embedded s3: %s exited on start (log: %s)", Gateway, e.LogFile)
		case <-ctx.Done():
			e.Stop()
			return fmt.Errorf("embedded s3: %s did not answer on %s: %w (log: %s)", Gateway, addr, ctx.Err(), e.LogFile)
		case <-time.After(20 * time.Millisecond):
		}
		if resp, err := client.Get(e.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
	}
}

// Stop stops the gateway: SIGTERM, then SIGKILL after 10 s.
func (e *Embedded) Stop() {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	e.cmd = nil
}
