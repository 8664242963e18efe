package registrytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/threadpin"
)

// Tool is the binary Start runs, as named to testutil.RequireTool.
const Tool = "docker-registry"

// startTimeout bounds how long Start waits for /v2/ to answer.
const startTimeout = 30 * time.Second

// Registry is a running docker-registry.
type Registry struct {
	Host string // 127.0.0.1:port
	Dir  string // the storage root directory
}

// URL returns the registry's base URL, "http://127.0.0.1:port".
func (r *Registry) URL() string { return "http://" + r.Host }

// Ref returns "127.0.0.1:port/repo".
func (r *Registry) Ref(repo string) string { return r.Host + "/" + repo }

// Start runs docker-registry with filesystem storage in a temp dir, deletes
// enabled, on a free 127.0.0.1 port, and returns once GET /v2/ answers 200.
// The registry is stopped at t.Cleanup. It skips (or fails, per
// IMSBUILD_TEST_REQUIRE) when docker-registry is not installed.
func Start(t testing.TB) *Registry {
	t.Helper()
	bin := testutil.RequireTool(t, Tool)
	var errs []error
	// A port picked by listening and closing can be taken before the
	// registry binds it; try a few.
	for range 3 {
		r, err := start(t, bin)
		if err == nil {
			return r
		}
		errs = append(errs, err)
	}
	t.Fatalf("start %s: %v", Tool, errors.Join(errs...))
	return nil
}

func start(t testing.TB, bin string) (*Registry, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	r := &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), Dir: filepath.Join(dir, "storage")}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config(r.Host, r.Dir)), 0o644); err != nil {
		return nil, err
	}
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Env = environ()
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release, err := threadpin.Start(cmd) // see threadpin: Pdeathsig is per thread
	if err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { err := cmd.Wait(); release(); exited <- err }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if err := waitReady(r.URL(), exited); err != nil {
		stop()
		return nil, fmt.Errorf("%s on %s: %w\n%s", Tool, r.Host, err, logs.String())
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("%s log:\n%s", Tool, logs.String())
		}
	})
	return r, nil
}

// config is a minimal distribution 2.8 configuration.
func config(addr, root string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, root, addr)
}

// environ drops REGISTRY_* variables, which would override the config.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls GET /v2/ until it answers 200, the process exits, or
// startTimeout passes.
func waitReady(base string, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.Header.Get("Docker-Distribution-Api-Version") == "registry/2.0" {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before answering: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("no answer on /v2/ after %s", startTimeout)
		case <-tick.C:
		}
	}
}
