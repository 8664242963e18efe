package pkgproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestWget downloads a package twice with wget through the proxy, the way
// debootstrap does (http_proxy in the environment).
func TestWget(t *testing.T) {
	wget := testutil.RequireTool(t, "wget")
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	dir := t.TempDir()
	for i := 1; i <= 2; i++ {
		out := filepath.Join(dir, fmt.Sprintf("x%d.deb", i))
		cmd := exec.CommandContext(t.Context(), wget, "--no-config", "-q", "--tries=1", "-O", out, m.url(debPath))
		cmd.Env = []string{"http_proxy=" + p.URL(), "HOME=" + dir, "PATH=" + os.Getenv("PATH")}
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("wget %d: %v\n%s", i, err, b)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, m.files[debPath]) {
			t.Fatalf("wget %d: %d bytes differing from the mirror's %d", i, len(got), len(m.files[debPath]))
		}
	}
	if n := m.count(debPath); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if st := stats(t, p); st.Hits != 1 || st.Misses != 1 || st.Stored != 1 {
		t.Errorf("Stats() = %+v, want 1 hit, 1 miss, 1 stored", st)
	}
}

// aptRepo is a one-package Debian repository ("deb [trusted=yes] URL
// stable main") served by an httptest server counting requests.
type aptRepo struct {
	*httptest.Server
	deb      []byte
	debPath  string
	requests *counter
}

// counter counts requests per path.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) add(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[path]++
}

func (c *counter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[path]
}

// newAptRepo builds package imsbuild-pkgproxy-test with dpkg-deb and serves
// it in a repository.
func newAptRepo(t *testing.T) *aptRepo {
	t.Helper()
	dpkgDeb := testutil.RequireTool(t, "dpkg-deb")
	root := filepath.Join(t.TempDir(), "pkg")
	for name, data := range map[string]string{
		"DEBIAN/control":                   "Package: imsbuild-pkgproxy-test\nVersion: 1.0\nArchitecture: all\nMaintainer: imsbuild <imsbuild@example.invalid>\nDescription: pkgproxy test package\n",
		"usr/share/imsbuild-test/data.bin": string(content(7, 64<<10)),
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	debFile := root + ".deb"
	if b, err := exec.CommandContext(t.Context(), dpkgDeb, "--root-owner-group", "--build", root, debFile).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	deb, err := os.ReadFile(debFile)
	if err != nil {
		t.Fatal(err)
	}
	r := &aptRepo{deb: deb, debPath: "/pool/main/i/imsbuild-pkgproxy-test/imsbuild-pkgproxy-test_1.0_all.deb", requests: &counter{m: map[string]int{}}}
	sum := sha256.Sum256(deb)
	packages := fmt.Sprintf("Package: imsbuild-pkgproxy-test\nVersion: 1.0\nArchitecture: all\nMaintainer: imsbuild <imsbuild@example.invalid>\n"+
		"Filename: %s\nSize: %d\nSHA256: %s\nDescription: pkgproxy test package\n\n", strings.TrimPrefix(r.debPath, "/"), len(deb), hex.EncodeToString(sum[:]))
	psum := sha256.Sum256([]byte(packages))
	release := fmt.Sprintf("Origin: imsbuild\nLabel: imsbuild\nSuite: stable\nCodename: stable\nDate: %s\nArchitectures: amd64 all\nComponents: main\nSHA256:\n %s %d main/binary-amd64/Packages\n %s %d main/binary-all/Packages\n",
		time.Now().UTC().Format(time.RFC1123), hex.EncodeToString(psum[:]), len(packages), hex.EncodeToString(psum[:]), len(packages))
	files := map[string][]byte{
		r.debPath:               deb,
		"/dists/stable/Release": []byte(release),
		"/dists/stable/main/binary-amd64/Packages": []byte(packages),
		"/dists/stable/main/binary-all/Packages":   []byte(packages),
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.requests.add(req.URL.Path)
		data, ok := files[req.URL.Path]
		if !ok {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, req.URL.Path, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(data))
	}))
	t.Cleanup(r.Close)
	return r
}

// aptGet runs apt-get args with a private configuration that fetches only
// from repo, through proxyURL.
func aptGet(t *testing.T, aptGetPath, dir, repoURL, proxyURL, cwd string, args ...string) {
	t.Helper()
	for _, d := range []string{"state/lists/partial", "cache/archives/partial", "etc/sources.list.d", "etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/sources.list"), []byte("deb [trusted=yes] "+repoURL+"/ stable main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Etc "%[1]s/etc";
Dir::Etc::sourcelist "%[1]s/etc/sources.list";
Dir::Etc::sourceparts "%[1]s/etc/sources.list.d";
Dir::Etc::parts "%[1]s/etc/apt.conf.d";
Dir::Etc::preferencesparts "%[1]s/etc/preferences.d";
Dir::Etc::trustedparts "%[1]s/etc/trusted.gpg.d";
Dir::Log "%[1]s/log";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "0";
Acquire::http::Proxy "%[2]s";
Debug::NoLocking "true";
`, dir, proxyURL)
	confPath := filepath.Join(dir, "apt.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), aptGetPath, append([]string{"-q"}, args...)...)
	cmd.Dir = cwd
	cmd.Env = []string{"APT_CONFIG=" + confPath, "PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// TestAptGet runs real apt-get through the proxy: two "builds" (fresh apt
// state each) update and download the same package; metadata is fetched
// fresh both times, the package once, and apt checks its hash.
func TestAptGet(t *testing.T) {
	aptGetPath := testutil.RequireTool(t, "apt-get")
	testutil.RequireRoot(t)
	repo := newAptRepo(t)
	c := newCache(t)
	p := startProxy(t, c)
	for i := 1; i <= 2; i++ {
		dir := t.TempDir()
		aptGet(t, aptGetPath, dir, repo.URL, p.URL(), dir, "update")
		aptGet(t, aptGetPath, dir, repo.URL, p.URL(), dir, "download", "imsbuild-pkgproxy-test")
		got, err := os.ReadFile(filepath.Join(dir, "imsbuild-pkgproxy-test_1.0_all.deb"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, repo.deb) {
			t.Fatalf("build %d: downloaded package differs from the repository's", i)
		}
		if n := repo.requests.get("/dists/stable/Release"); n != i {
			t.Errorf("build %d: upstream Release requests = %d, want %d (metadata fresh)", i, n, i)
		}
	}
	if n := repo.requests.get(repo.debPath); n != 1 {
		t.Errorf("upstream package requests = %d, want 1", n)
	}
	if st := stats(t, p); st.Hits != 1 || st.Misses != 1 || st.Stored != 1 || st.PassThrough == 0 {
		t.Errorf("Stats() = %+v, want 1 hit, 1 miss, 1 stored, metadata passed through", st)
	}
}
