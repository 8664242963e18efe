package jobs

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// writeFiles writes name → content files under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	testutil.WriteFiles(t, dir, files, 0o640)
}

func dict(kv ...string) *[]store.TemplateEntry {
	var d []store.TemplateEntry
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, store.TemplateEntry{Key: kv[i], Value: kv[i+1]})
	}
	return &d
}

// TestRenderRecipe: the listed files are rendered with Jinja2 and keep
// their mode; unlisted files are left alone.
func TestRenderRecipe(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		templateListFile: "template_files:\n  - config.xml\n  - sub/../root/config.sh\n",
		"config.xml":     `<repository distribution="{{ release }}"/>{% if arch == "x86_64" %}<x/>{% endif %}` + "\n",
		"root/config.sh": "echo {{ release | upper }}\n",
		"other.xml":      "{{ release }}\n",
	})
	if err := os.Chmod(filepath.Join(dir, "root/config.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := renderRecipe(dir, dict("release", "bookworm", "arch", "x86_64"), &log); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"config.xml":     `<repository distribution="bookworm"/><x/>`,
		"root/config.sh": "echo BOOKWORM",
		"other.xml":      "{{ release }}\n",
	} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "root/config.sh")); fi.Mode().Perm() != 0o755 {
		t.Errorf("config.sh mode %v, want 0755 kept", fi.Mode())
	}
}

// TestRenderRecipeHostile: template paths that leave the recipe, through
// .. or a symlink, includes of host files, and template files without
// values are errors; nothing outside the recipe is read or written.
func TestRenderRecipeHostile(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	writeFiles(t, outside, map[string]string{"secret": "{{ release }} host secret\n"})
	for _, tc := range []struct {
		name  string
		files map[string]string
		link  string // config.xml → link, when set
		dict  *[]store.TemplateEntry
		want  string
	}{
		{"dotdot", map[string]string{templateListFile: "template_files: [../secret]\n"}, "", dict("release", "x"), "outside the recipe"},
		{"absolute", map[string]string{templateListFile: "template_files: [" + secret + "]\n"}, "", dict("release", "x"), "outside the recipe"},
		{"symlink", map[string]string{templateListFile: "template_files: [config.xml]\n"}, secret, dict("release", "x"), "config.xml"},
		{"include", map[string]string{templateListFile: "template_files: [config.xml]\n", "config.xml": `{% include "` + secret + `" %}`}, "", dict("release", "x"), "config.xml"},
		{"no values", map[string]string{templateListFile: "template_files: [config.xml]\n", "config.xml": "{{ release }}"}, "", nil, "template_dictionary is empty"},
		{"bad yaml", map[string]string{templateListFile: "template_files: {[\n"}, "", dict("release", "x"), templateListFile},
		{"bad template", map[string]string{templateListFile: "template_files: [config.xml]\n", "config.xml": "{% if %}"}, "", dict("release", "x"), "config.xml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			if tc.link != "" {
				if err := os.Symlink(tc.link, filepath.Join(dir, "config.xml")); err != nil {
					t.Fatal(err)
				}
			}
			err := renderRecipe(dir, tc.dict, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("renderRecipe = %v, want an error naming %q", err, tc.want)
			}
			if b, _ := os.ReadFile(secret); string(b) != "{{ release }} host secret\n" {
				t.Errorf("the file outside the recipe changed: %q", b)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "config.xml")); tc.link == "" && strings.Contains(string(b), "host secret") {
				t.Errorf("a host file was included: %q", b)
			}
		})
	}
	// No list: nothing rendered, a warning when there are values.
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.xml": "{{ release }}"})
	var log bytes.Buffer
	if err := renderRecipe(dir, dict("release", "x"), &log); err != nil || !strings.Contains(log.String(), "warning") {
		t.Errorf("renderRecipe without a list = %v, log %q", err, log.String())
	}
}

// TestWaitForRepos: the description's http(s) repositories are probed
// until they answer; a description without one is an error, as in IMS.
func TestWaitForRepos(t *testing.T) {
	old := waitTimes
	waitTimes.total, waitTimes.every, waitTimes.request = 3*time.Second, 20*time.Millisecond, time.Second
	t.Cleanup(func() { waitTimes = old })
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/rpm/repodata/repomd.xml" && hits.Add(1) > 3: // up on the fourth try
		case r.URL.Path == "/deb/dists/bookworm/Release":
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"config.xml": `<image><repository type="rpm-md"><source path="` + srv.URL + `/rpm/"/></repository>` +
		`<repository type="apt-deb" distribution="bookworm"><source path="` + srv.URL + `/deb"/></repository>` +
		`<repository type="rpm-md"><source path="obs://x"/></repository></image>`})
	var log bytes.Buffer
	if err := waitForRepos(t.Context(), srv.Client(), dir, &log); err != nil {
		t.Fatalf("waitForRepos = %v\n%s", err, log.String())
	}
	if hits.Load() < 4 || !strings.Contains(log.String(), "waiting for repository "+srv.URL+"/rpm") {
		t.Errorf("rpm repo probed %d times; log:\n%s", hits.Load(), log.String())
	}
	writeFiles(t, dir, map[string]string{"config.xml": `<image><repository type="rpm-md"><source path="` + srv.URL + `/never"/></repository></image>`})
	if err := waitForRepos(t.Context(), srv.Client(), dir, io.Discard); err == nil || !strings.Contains(err.Error(), "/never not up") {
		t.Errorf("waitForRepos of a dead repository = %v", err)
	}
	writeFiles(t, dir, map[string]string{"config.xml": `<image><repository><source path="dir:///srv/repo"/></repository></image>`})
	if err := waitForRepos(t.Context(), srv.Client(), dir, io.Discard); err == nil || !strings.Contains(err.Error(), "no http(s) repository") {
		t.Errorf("waitForRepos without http repositories = %v", err)
	}
}

// TestFetchRecipe: the archive's md5 is checked against the object's
// md5sum metadata; a mismatch fails, an unsafe archive fails.
func TestFetchRecipe(t *testing.T) {
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "ims")
	client := s3s.Client(t)
	blobs := blob.New(client)
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"config.xml": "<image/>", "root/etc/motd": "hi"})
	archive, err := exec.Command("tar", "-C", src, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(archive)
	put := func(key string, data []byte, md5sum string) store.Recipe {
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String(key),
			Body: bytes.NewReader(data), Metadata: map[string]string{"md5sum": md5sum}}); err != nil {
			t.Fatal(err)
		}
		return store.Recipe{ID: "r", Link: &store.Link{Path: "s3://ims/" + key, Type: "s3"}}
	}
	good := put("good.tgz", archive, hex.EncodeToString(sum[:]))
	work := t.TempDir()
	if err := fetchRecipe(t.Context(), blobs, good, work, filepath.Join(work, "recipe"), io.Discard); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(work, "recipe/root/etc/motd")); string(b) != "hi" {
		t.Errorf("unpacked motd = %q", b)
	}
	bad := put("bad.tgz", archive, strings.Repeat("0", 32))
	work = t.TempDir()
	if err := fetchRecipe(t.Context(), blobs, bad, work, filepath.Join(work, "recipe"), io.Discard); err == nil || !strings.Contains(err.Error(), "md5") {
		t.Errorf("fetchRecipe with a wrong md5 = %v", err)
	}
	evil, err := exec.Command("tar", "-C", src, "-czf", "-", "--transform", "s|config.xml|../escaped.xml|", "config.xml").Output()
	if err != nil {
		t.Fatal(err)
	}
	es := md5.Sum(evil)
	work = t.TempDir()
	if err := fetchRecipe(t.Context(), blobs, put("evil.tgz", evil, hex.EncodeToString(es[:])), work, filepath.Join(work, "recipe"), io.Discard); err == nil {
		t.Error("fetchRecipe of an archive with ../ succeeded")
	}
	if _, err := os.Stat(filepath.Join(work, "escaped.xml")); err == nil {
		t.Error("an archive entry escaped the recipe directory")
	}
}

// TestPublishImageCleanup: when an upload fails half way, the image
// record and the objects already uploaded are removed, as IMS's helper
// does.
func TestPublishImageCleanup(t *testing.T) {
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "boot-images")
	client := s3s.Client(t)
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r, err := New(Config{Store: st, Blobs: blob.New(client), CacheDir: filepath.Join(dir, "cache"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	img := filepath.Join(dir, "img")
	rootfs := "squashfs bytes"
	rs := md5.Sum([]byte(rootfs))
	// The manifest lists a kernel the directory does not have.
	writeFiles(t, img, map[string]string{"rootfs": rootfs, "manifest.json": `{"version":"1.0","created":"2026-01-02 03:04:05","artifacts":[` +
		`{"link":{"path":"s3://boot-images/x/rootfs","type":"s3"},"type":"application/vnd.cray.image.rootfs.squashfs","md5":"` + hex.EncodeToString(rs[:]) + `"},` +
		`{"link":{"path":"s3://boot-images/x/kernel","type":"s3"},"type":"application/vnd.cray.image.kernel","md5":"` + strings.Repeat("1", 32) + `"}]}`})
	j := &jobRun{job: store.Job{ID: "00000000-0000-4000-8000-000000000001"}, log: io.Discard, r: r}
	id, err := j.publishImage(t.Context(), img, "n", "x86_64")
	if err == nil {
		t.Fatal("publishImage without a kernel file succeeded")
	}
	if _, ok := st.Images.Get(id); ok || st.Images.Len() != 0 {
		t.Errorf("image record %s left behind", id)
	}
	out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String("boot-images")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 0 {
		t.Errorf("%d objects left behind, first %s", len(out.Contents), aws.ToString(out.Contents[0].Key))
	}
}
