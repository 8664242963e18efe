package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// secretToken is a sensitive variable's value: it must reach the remote
// steps through their environment only, never a stored blob or a log.
const secretToken = "tok-5ecret-a81c2d"

// executorImages extends examples/busybox with customized images, one of
// them using a sensitive variable.
const executorImages = `
variable "token" {
  type      = string
  sensitive = true
}

image "c1" {
  name = "busybox-c1"
  from = image.compute
  customize {
    inline = "echo c1 > /etc/role"
  }
}

image "c2" {
  name = "busybox-c2"
  from = image.compute
  customize {
    inline = "echo c2 > /etc/role"
  }
}

image "c3" {
  name = "busybox-c3"
  from = image.base
  customize {
    inline = <<-EOT
      test -n "${var.token}"
      echo "token is ${var.token}"
      echo c3 > /etc/role
    EOT
  }
}

publish "dir" "more" {
  images = [image.c1, image.c2, image.c3]
  path   = "out"
}
`

// executorExample is examples/busybox with executorImages, and the S3
// server behind its remote cache URL.
func executorExample(t *testing.T, srv *s3test.Server, extra string) (dir, url string) {
	t.Helper()
	dir = example(t)
	f, err := os.OpenFile(filepath.Join(dir, "build.ims.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(executorImages + extra); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dir, "s3://ci-cache/" + filepath.Base(t.Name()) + "?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region
}

type jsonEvent struct {
	Step, Status, Error string
	Remote              bool
	LogPath             string `json:"log_path"`
	DurationMS          int64  `json:"duration_ms"`
}

func jsonEvents(t *testing.T, stdout string) []jsonEvent {
	t.Helper()
	var out []jsonEvent
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev jsonEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// bootImages returns the sha256 of every published boot image file (rootfs,
// manifest, SBOM) by its path under out/boot-images.
func bootImages(t *testing.T, dir string) map[string]string {
	t.Helper()
	root := filepath.Join(dir, "out", "boot-images")
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = testutil.FileSHA256(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestExecutorBuildsEveryStepRemotely: with --executor local every image
// step is built by `imsbuild internal run-step` processes, the
// orchestrator builds none, and the published images are those of a local
// build; a second run is all cached and runs no step; the sensitive
// variable is in no blob of the remote cache and no log.
func TestExecutorBuildsEveryStepRemotely(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "IMSBUILD_VAR_token=" + secretToken}
	images := []string{"image.base", "image.compute", "image.c1", "image.c2", "image.c3"}

	local, _ := executorExample(t, srv, "")
	start := time.Now()
	r := imsbuildEnv(t, local, env, "build", "--json", "-j", "3", ".")
	if r.code != 0 {
		t.Fatalf("local build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	localTime := time.Since(start)
	stepTimes := map[string]string{}
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev.Status == "done" && strings.HasPrefix(ev.Step, "image.") {
			stepTimes[ev.Step] = fmt.Sprintf("%dms", ev.DurationMS)
		}
	}

	dir, url := executorExample(t, srv, "")
	start = time.Now()
	r = imsbuildEnv(t, dir, env, "build", "--json", "-j", "3", "--executor", "local", "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("executor build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev.Status == "done" && strings.HasPrefix(ev.Step, "image.") {
			stepTimes[ev.Step] += fmt.Sprintf(" → %dms", ev.DurationMS)
		}
	}
	t.Logf("step times, local → remote: %v", stepTimes)
	t.Logf("%d images: local build %v, with the local executor and S3 %v", len(images), localTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	started := map[string]bool{}
	for _, ev := range jsonEvents(t, r.stdout) {
		switch {
		case ev.Status == "started" && strings.HasPrefix(ev.Step, "image."):
			if !ev.Remote {
				t.Errorf("%s started in the orchestrator, want remote", ev.Step)
			}
			started[ev.Step] = true
		case ev.Status == "done" && strings.HasPrefix(ev.Step, "image.") && !ev.Remote:
			t.Errorf("%s done in the orchestrator, want remote", ev.Step)
		case ev.Status == "failed" || ev.Status == "cached":
			t.Errorf("event %+v in a first build", ev)
		}
	}
	for _, id := range images {
		if !started[id] {
			t.Errorf("%s was not built remotely; started: %v", id, started)
		}
	}
	if got, want := bootImages(t, dir), bootImages(t, local); len(want) != 3*len(images) || !equal(got, want) {
		t.Errorf("published boot images = %v, want the local build's %v", got, want)
	}

	// Another checkout, an empty local cache: all cached, no step runs.
	// It has the first one's HMAC key, without which image.c3's key,
	// which keys the sensitive variable by it, differs (as without an
	// executor).
	again, _ := executorExample(t, srv, "")
	hmacKey, err := os.ReadFile(filepath.Join(dir, ".imsbuild", "cache", "hmac.key"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WriteFiles(t, filepath.Join(again, ".imsbuild", "cache"), map[string]string{"hmac.key": string(hmacKey)}, 0o600)
	r = imsbuildEnv(t, again, env, "build", "--json", "--executor", "local", "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("second executor build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev.Status == "started" && strings.HasPrefix(ev.Step, "image.") {
			t.Errorf("second build ran %s, want every step cached", ev.Step)
		}
	}
	if got := events(t, r.stdout); got["image.c3"] != "cached" || got["image.base"] != "cached" {
		t.Errorf("second build = %v, want cached images", got)
	}

	// The secret: in no remote blob (the bundle decompressed), no log file,
	// no output; and the log did get the line, masked.
	blobs := 0
	for key, body := range bucketObjects(t, srv, "ci-cache") {
		blobs++
		if bytes.Contains(body, []byte(secretToken)) {
			t.Errorf("remote cache object %s holds the sensitive value", key)
		}
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if plain, err := io.ReadAll(zr); err == nil && bytes.Contains(plain, []byte(secretToken)) {
				t.Errorf("remote cache object %s (gzip) holds the sensitive value", key)
			}
		}
	}
	if blobs == 0 {
		t.Fatal("the remote cache is empty")
	}
	if strings.Contains(r.stdout+r.stderr, secretToken) {
		t.Error("the output holds the sensitive value")
	}
	logs, _ := filepath.Glob(filepath.Join(dir, ".imsbuild", "cache", "logs", "*.log"))
	c3 := false
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(secretToken)) {
			t.Errorf("log %s holds the sensitive value", l)
		}
		c3 = c3 || bytes.Contains(b, []byte("token is "))
	}
	if !c3 {
		t.Errorf("no step log among %v has image.c3's output", logs)
	}
}

// bucketObjects returns every object of bucket by key.
func bucketObjects(t *testing.T, srv *s3test.Server, bucket string) map[string][]byte {
	t.Helper()
	c := srv.Client(t)
	out := map[string][]byte{}
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			g, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(g.Body)
			g.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			out[*o.Key] = b
		}
	}
	return out
}

// TestExecutorFailures: a step whose remote key differs is refused naming
// both keys (env() is not shipped to remote steps); a failing remote
// step's log tail reaches the orchestrator's output; an executor without a
// remote cache is a usage error naming the fix.
func TestExecutorFailures(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "IMSBUILD_VAR_token=" + secretToken, "SITE_NAME=lab7"}

	t.Run("key differs", func(t *testing.T) {
		dir, url := executorExample(t, srv, `
image "site" {
  name = "busybox-site"
  from = image.base
  customize {
    inline = "echo ${env("SITE_NAME")} > /etc/site"
  }
}
`)
		r := imsbuildEnv(t, dir, env, "build", "--json", "--executor", "local", "--cache-to", url, ".", "image.site")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		var failed *jsonEvent
		for _, ev := range jsonEvents(t, r.stdout) {
			if ev.Step == "image.site" && ev.Status == "failed" {
				failed = &ev
			}
		}
		if failed == nil {
			t.Fatalf("no failed event for image.site:\n%s", r.stdout)
		}
		b, err := os.ReadFile(failed.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "refusing to build") || !strings.Contains(string(b), "orchestrator's key "+keyOf(t, r.stdout, "image.site")) {
			t.Errorf("image.site's log does not refuse naming the orchestrator's key:\n%s", b)
		}
	})

	t.Run("step fails", func(t *testing.T) {
		dir, url := executorExample(t, srv, `
image "broken" {
  name = "busybox-broken"
  from = image.base
  customize {
    inline = "echo remote-step-marker-42; exit 3"
  }
}
`)
		r := imsbuildEnv(t, dir, env, "build", "--executor", "local", "--cache-to", url, ".", "image.broken")
		if r.code != 1 || !strings.Contains(r.stdout+r.stderr, "remote-step-marker-42") || !strings.Contains(r.stdout+r.stderr, "last lines of") ||
			!strings.Contains(r.stdout, "image.base") || !strings.Contains(r.stdout, "(remote)") {
			t.Fatalf("exit %d, want 1 with the log tail:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("oci remote cache", func(t *testing.T) {
		reg := registrytest.Start(t)
		dir, _ := executorExample(t, srv, "")
		r := imsbuildEnv(t, dir, env, "build", "--json", "--executor", "local", "--cache-to", "oci://"+reg.Ref("ci/exec-cache"), ".", "image.c1")
		got := map[string]bool{}
		for _, ev := range jsonEvents(t, r.stdout) {
			if ev.Status == "done" && ev.Remote {
				got[ev.Step] = true
			}
		}
		if r.code != 0 || !got["image.base"] || !got["image.compute"] || !got["image.c1"] {
			t.Fatalf("exit %d, remote steps done %v, want image.base, image.compute and image.c1:\n%s\n%s", r.code, got, r.stdout, r.stderr)
		}
	})

	t.Run("no remote cache", func(t *testing.T) {
		dir, _ := executorExample(t, srv, "")
		r := imsbuildEnv(t, dir, env, "build", "--executor", "local", ".")
		if r.code != 2 || !strings.Contains(r.stderr, `cache { to = "s3://`) || !strings.Contains(r.stderr, "--cache-to") {
			t.Fatalf("exit %d, want 2 naming the fix:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
	})
}

// keyOf returns the key of step's started event.
func keyOf(t *testing.T, stdout, step string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var ev struct{ Step, Status, Key string }
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Step == step && ev.Status == "started" && ev.Key != "" {
			return ev.Key
		}
	}
	t.Fatalf("no started event with a key for %s", step)
	return ""
}

// TestFetchBundleHostile: a bundle entry that escapes the work dir and a
// bundle larger than the bound are refused.
func TestFetchBundleHostile(t *testing.T) {
	c, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	remote := localRemote{c}
	put := func(entries map[string]string) cache.Digest {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for name, body := range entries {
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(body))
		}
		tw.Close()
		gz.Close()
		d, _, err := c.Put(t.Context(), &buf, "")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	work := t.TempDir()
	dir := filepath.Join(work, "bundle")
	err = fetchBundle(t.Context(), remote, put(map[string]string{"build/../../escaped": "x"}), dir, 1<<20)
	if !errors.Is(err, untar.ErrUnsafe) {
		t.Errorf("fetchBundle(../ entry) = %v, want ErrUnsafe", err)
	}
	if _, err := os.Stat(filepath.Join(work, "escaped")); err == nil {
		t.Error("an entry was written outside the bundle directory")
	}
	err = fetchBundle(t.Context(), remote, put(map[string]string{"build/big": strings.Repeat("x", 64<<10)}), filepath.Join(work, "b2"), 16<<10)
	if !errors.Is(err, errBundleTooLarge) {
		t.Errorf("fetchBundle(too large) = %v, want errBundleTooLarge", err)
	}
	if err := fetchBundle(t.Context(), remote, put(map[string]string{"build/ok": "fine"}), filepath.Join(work, "b3"), 1<<20); err != nil {
		t.Errorf("fetchBundle(good) = %v", err)
	}
}

// localRemote is a local cache as a tiered.Remote.
type localRemote struct{ *local.Cache }

func (r localRemote) Actions() cache.ActionCache { return r.Cache.Actions() }
func (r localRemote) Name() string               { return "local-remote" }

// TestExecutorSIGINTLeavesNothing: SIGINT while a remote step runs exits
// 130 and leaves no run-step process, sandboxed script or scratch space.
func TestExecutorSIGINTLeavesNothing(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	tmp := t.TempDir()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey, "IMSBUILD_VAR_token": secretToken, "TMPDIR": tmp} {
		t.Setenv(k, v)
	}
	dir, url := executorExample(t, srv, "")
	cmd, out := startBuildArgs(t, dir, "| sleeping", "build", "--executor", "local", "--cache-to", url, ".", "image.compute")
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit = %v, want 130\n%s", err, out)
	}
	for _, p := range []string{"sleep 3022", url} { // url: this test's run-step processes
		if left := testutil.ProcessesMatching(t, p); len(left) > 0 {
			t.Errorf("processes left: %v", left)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("scratch space left in $TMPDIR: %v", left)
	}
}
