package kiwi

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// TestPrepareDebianNode runs the whole create path on the example recipe:
// fetch, render, wait for the Debian mirror, inject a CA, and a real
// kiwi-ng system prepare (about 3 minutes on 2 cores). The image packages
// also come from an HTTPS site mirror signed by that CA only, so the build
// fails unless the injected CA is trusted during package installation.
func TestPrepareDebianNode(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng build; skipped with -short")
	}
	testutil.RequireTool(t, "kiwi-ng")
	testutil.RequireTool(t, "debootstrap")
	requireNamespaces(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()

	work := t.TempDir()
	desc := filepath.Join(work, "recipe")
	if err := FetchRecipe(ctx, "../../examples/debian-node/recipes/node", desc); err != nil {
		t.Fatal(err)
	}
	if err := Render(desc, map[string]string{"release": "bookworm"}); err != nil {
		t.Fatal(err)
	}
	urls, err := Repositories(desc)
	if err != nil {
		t.Fatal(err)
	}
	var repos []*spec.Repository
	for _, u := range urls {
		repos = append(repos, &spec.Repository{Name: u, Type: "apt", URL: u, Distribution: "bookworm", WaitTimeout: 30 * time.Second})
	}
	client := &http.Client{Timeout: time.Minute}
	if err := WaitForRepos(ctx, client, repos, testWriter{t}); err != nil {
		t.Fatal(err)
	}
	mirror := startSiteMirror(t, "http://deb.debian.org")
	ca := mirror.CA
	addRepository(t, desc, mirror.URL)
	if err := InjectCACerts(desc, []string{ca}); err != nil {
		t.Fatal(err)
	}

	mounts := readMounts(t)
	root := filepath.Join(work, "root")
	kiwiLog := filepath.Join(work, "kiwi.log")
	// Not below /tmp (see PrepareOptions.SharedCacheDir).
	cacheDir, err := os.MkdirTemp("/var/cache", "imsbuild-kiwi-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cacheDir) })
	start := time.Now()
	err = Prepare(ctx, PrepareOptions{
		Description:    desc,
		Root:           root,
		SharedCacheDir: cacheDir,
		Log:            testWriter{t},
		KiwiLog:        kiwiLog,
	})
	if err != nil {
		t.Fatalf("Prepare() = %v", err)
	}
	t.Logf("prepare took %s", time.Since(start).Round(time.Second))
	if got := readMounts(t); got != mounts {
		t.Errorf("/proc/mounts changed:\nbefore:\n%s\nafter:\n%s", mounts, got)
	}

	for _, pattern := range []string{"boot/vmlinuz-*", "boot/initrd.img-*"} {
		m, _ := filepath.Glob(filepath.Join(root, pattern))
		if len(m) == 0 {
			t.Errorf("no %s in the prepared root", pattern)
		}
		for _, p := range m {
			if fi, err := os.Stat(p); err != nil || fi.Size() < 1<<20 {
				t.Errorf("%s: %v, size %d; want a real file", p, err, fi.Size())
			}
		}
	}
	osRelease, err := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if err != nil || !strings.Contains(string(osRelease), "VERSION_CODENAME=bookworm") {
		t.Errorf("/etc/os-release = %q, %v; want bookworm", osRelease, err)
	}
	bundle, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil || !strings.Contains(string(bundle), strings.TrimSpace(ca)) {
		t.Errorf("the injected CA is not in /etc/ssl/certs/ca-certificates.crt (%v)", err)
	}
	if mirror.Requests.Load() == 0 {
		t.Error("apt never used the HTTPS site mirror")
	}
	for _, p := range []string{"etc/apt/apt.conf.d/99imsbuild-build-ca", "usr/local/share/imsbuild"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("/%s, used only while installing packages, is left in the image", p)
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "etc/dracut.conf.d/90-imsbuild.conf"))
	if err != nil || !strings.Contains(string(conf), "dmsquash-live") {
		t.Errorf("dracut drop-in missing from the root: %v", err)
	}
}

// testWriter sends kiwi's output to the test log, line by line.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if i := strings.LastIndexByte(line, '\r'); i >= 0 {
			line = line[i+1:]
		}
		if line != "" {
			w.t.Log(line)
		}
	}
	return len(p), nil
}

// addRepository adds an apt repository at url to the description, signed
// like the Debian archive, used while installing the image packages.
func addRepository(t *testing.T, desc, url string) {
	t.Helper()
	file, err := DescriptionFile(desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	repo := `<repository type="apt-deb" alias="site" distribution="bookworm" components="main" repository_gpgcheck="true">
        <source path="` + url + `">
            <signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/>
        </source>
    </repository>
    `
	x := strings.Replace(string(b), "<packages type=\"image\">", repo+"<packages type=\"image\">", 1)
	if x == string(b) {
		t.Fatal("no <packages type=\"image\"> in the description")
	}
	if err := os.WriteFile(file, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
}
