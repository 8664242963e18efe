package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	// A site's build directory whose executor block configures serve's.
	site, bad := filepath.Join(dir, "site"), filepath.Join(dir, "bad")
	testutil.WriteFiles(t, site, map[string]string{"site.ims.hcl": "imsbuild {\n  executor \"kubernetes\" {\n    image = \"builder:1\"\n  }\n}\n"}, 0o644)
	testutil.WriteFiles(t, bad, map[string]string{"site.ims.hcl": "imsbuild {\n  executor \"kubernetes\" {\n    imag = \"builder:1\"\n  }\n}\n"}, 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no data dir", []string{"serve"}, "--data-dir is required"},
		{"open listen", []string{"serve", "--data-dir", dir, "--listen", "0.0.0.0:9000"}, "give --token-file, or --insecure-no-auth"},
		{"tls half", []string{"serve", "--data-dir", dir, "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{"port range", []string{"serve", "--data-dir", dir, "--ssh-port-range", "9-1"}, "--ssh-port-range"},
		{"empty token", []string{"serve", "--data-dir", dir, "--token-file", "/dev/null"}, "want one token"},
		{"signing key", []string{"serve", "--data-dir", dir, "--signing-key", filepath.Join(dir, "nope.pem")}, "--signing-key " + filepath.Join(dir, "nope.pem") + ": cannot read signing key"},
		{"executor without remote cache", []string{"serve", "--data-dir", dir, "--executor", "kubernetes", "--builder-image", "builder:1"}, "the kubernetes executor builds steps elsewhere and needs a remote cache to share them: give --cache-to s3://bucket/prefix"},
		{"executor block without remote cache", []string{"serve", "--data-dir", dir, "--executor-config", site}, "the kubernetes executor builds steps elsewhere and needs a remote cache"},
		{"executor block, bad kubeconfig", []string{"serve", "--data-dir", dir, "--executor-config", site, "--cache-to", "s3://b/p?endpoint=http://127.0.0.1:1", "--kubeconfig", "/nonexistent/kubeconfig"}, "kubeconfig: stat /nonexistent/kubeconfig"},
		{"bad executor block", []string{"serve", "--data-dir", dir, "--executor-config", bad, "--cache-to", "s3://b/p"}, "site.ims.hcl:3:5: error: Unsupported argument"},
		{"executor without image", []string{"serve", "--data-dir", dir, "--executor", "kubernetes", "--cache-to", "s3://b/p"}, "--executor kubernetes needs the builder image its Jobs run: give --builder-image"},
		{"unknown executor", []string{"serve", "--data-dir", dir, "--executor", "slurm"}, `--executor "slurm": want kubernetes, local or none`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := imsbuild(t, dir, tc.args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("imsbuild %v = exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
			}
		})
	}
}

// serveProc is a running imsbuild serve.
type serveProc struct {
	cmd    *exec.Cmd
	url    string
	stdout *testutil.SyncBuffer
	stderr *testutil.SyncBuffer
	done   chan error
}

var listenRE = regexp.MustCompile(`listening on (https?://\S+)`)

// startServe runs imsbuild serve and waits for it to print its address
// and answer /healthz/ready.
func startServe(t *testing.T, client *http.Client, args ...string) *serveProc {
	t.Helper()
	if _, err := blob.LookGateway(); err != nil {
		testutil.RequireTool(t, blob.Gateway)
	}
	p := &serveProc{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(binary, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("imsbuild serve exited: %v\nstdout: %s\nstderr: %s", err, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		m := listenRE.FindStringSubmatch(p.stdout.String())
		if m == nil {
			continue
		}
		p.url = m[1]
		if resp, err := client.Get(p.url + "/healthz/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
	}
	t.Fatalf("imsbuild serve not ready in time\nstdout: %s\nstderr: %s", p.stdout, p.stderr)
	return nil
}

func (p *serveProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *serveProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("imsbuild serve did not exit")
	}
	return p.cmd.ProcessState.ExitCode()
}

// TestServeKill9 hammers POSTs at a real imsbuild serve process, kills it
// with SIGKILL, and checks that every acknowledged record is in the data
// file and that the files parse; then that the embedded S3 died with it,
// a restart serves the records, and a second server on the directory is
// refused.
func TestServeKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers; skipped in -short mode")
	}
	dir := filepath.Join(t.TempDir(), "ims-data")
	client := &http.Client{Timeout: 10 * time.Second}
	p := startServe(t, client, "--data-dir", dir)

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"name":"k%d-%d","public_key":"ssh-ed25519 AAAA"}`, w, i)
				resp, err := client.Post(p.url+"/v3/public-keys", "application/json", strings.NewReader(body))
				if err != nil {
					return // the server is gone
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					continue
				}
				var rec struct{ ID string }
				if json.Unmarshal(data, &rec) == nil {
					mu.Lock()
					acked = append(acked, rec.ID)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	close(stop)
	wg.Wait()
	if len(acked) < 10 {
		t.Fatalf("only %d POSTs acknowledged before the kill", len(acked))
	}
	data, err := os.ReadFile(filepath.Join(dir, store.FilePublicKeys))
	if err != nil {
		t.Fatal(err)
	}
	var recs []map[string]any
	if err := json.Unmarshal(data, &recs); err != nil {
		t.Fatalf("data file after kill -9 does not parse: %v", err)
	}
	onDisk := map[string]bool{}
	for _, r := range recs {
		onDisk[r["id"].(string)] = true
	}
	for _, id := range acked {
		if !onDisk[id] {
			t.Errorf("acknowledged key %s lost in the kill", id)
		}
	}
	t.Logf("%d POSTs acknowledged, %d records on disk", len(acked), len(recs))

	// versitygw dies with the server (Pdeathsig).
	deadline := time.Now().Add(10 * time.Second)
	for len(testutil.ProcessesMatching(t, dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := testutil.ProcessesMatching(t, dir); len(left) > 0 {
		t.Errorf("processes left after kill -9: %v", left)
	}

	// A restart serves what was acknowledged; a second server is refused.
	p2 := startServe(t, client, "--data-dir", dir)
	resp, err := client.Get(p2.url + "/v3/public-keys/" + acked[len(acked)-1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("last acknowledged key after restart: %d", resp.StatusCode)
	}
	r := imsbuild(t, t.TempDir(), "serve", "--listen", "127.0.0.1:0", "--data-dir", dir)
	if r.code != exitFailed || !strings.Contains(r.stderr, "in use by another imsbuild serve") {
		t.Errorf("second server: exit %d, %q; want exit 1, in use", r.code, r.stderr)
	}
	// SIGTERM: a graceful stop, exit 0.
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t); code != 0 || !strings.Contains(p2.stdout.String(), "stopped") {
		t.Errorf("after SIGTERM: exit %d, stdout %q", code, p2.stdout)
	}
}

// TestServeTLSAndToken serves HTTPS with a bearer token: healthz is open,
// everything else needs the token.
func TestServeTLSAndToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers; skipped in -short mode")
	}
	tmp := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, tmp)
	tokenFile := filepath.Join(tmp, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	p := startServe(t, client, "--data-dir", filepath.Join(tmp, "data"), "--tls-cert", certFile, "--tls-key", keyFile, "--token-file", tokenFile)
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("url %s is not https", p.url)
	}
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", p.url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 401 && !bytes.Contains(body, []byte(`"title":"Unauthorized"`)) {
			t.Errorf("401 body %s", body)
		}
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz/live", "", 200},
		{"/apis/ims/v3/images", "", 401},
		{"/apis/ims/v3/images", "wrong", 401},
		{"/apis/ims/v3/images", "s3cret-token", 200},
		{"/metrics", "", 401},
	} {
		if got := get(tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s with token %q = %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}
}

func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
