package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/publish"
)

// fileSums returns the size, md5 and sha256 digest of a file.
func fileSums(t testing.TB, path string) (int64, string, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mh, sh := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(mh, sh), f)
	if err != nil {
		t.Fatal(err)
	}
	return n, hex.EncodeToString(mh.Sum(nil)), "sha256:" + hex.EncodeToString(sh.Sum(nil))
}

// checkFetched compares what Fetch returned and wrote with the published
// outputs of img.
func checkFetched(t *testing.T, arts map[string]FetchedArtifact, dst string, img publish.Image) {
	t.Helper()
	want := map[string]FetchedArtifact{}
	for _, name := range artifactNames {
		out, ok := img.Outputs[name]
		if !ok {
			continue
		}
		want[name] = FetchedArtifact{
			Name: name, Path: filepath.Join(dst, name), MediaType: ims.MediaTypeOf(name),
			MD5: out.MD5, SHA256: string(out.Digest), Size: out.Size,
		}
	}
	if diff := cmp.Diff(want, arts); diff != "" {
		t.Errorf("Fetch() artifacts mismatch (-want +got):\n%s", diff)
	}
	for name, a := range want {
		n, m, s := fileSums(t, a.Path)
		if n != a.Size || m != a.MD5 || s != a.SHA256 {
			t.Errorf("%s on disk: %d %s %s, want %d %s %s", name, n, m, s, a.Size, a.MD5, a.SHA256)
		}
	}
	entries, err := os.ReadDir(dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dst holds %v, want only the %d artifacts", names, len(want))
	}
}

// manifestSHA256 reads an object and returns "sha256:<hex>" of it.
func manifestSHA256(t testing.TB, c *s3.Client, bucket, key string) string {
	t.Helper()
	o, err := getObject(t, c, bucket, key)
	if err != nil {
		t.Fatalf("GetObject(%s) error: %v", key, err)
	}
	return "sha256:" + o.sha256
}

func TestFetchRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	images := testImages(t, store)
	cfg := testConfig(srv)
	cfg.Prefix = "site"
	if err := newPublisher(t, cfg).Publish(ctx, store, images); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	// Credentials for the URL-only case come from the SDK default chain.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	for _, img := range images {
		plain := "s3://" + DefaultBucket + "/site/" + img.ID + "/" + ims.ManifestFile
		wantDigest := manifestSHA256(t, srv.Client(t), DefaultBucket, "site/"+img.ID+"/"+ims.ManifestFile)
		tests := []struct {
			name string
			cfg  Config
			url  string
		}{
			// Bucket and Prefix of the config do not matter.
			{"config", Config{Config: s3client.Config{Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true, Credentials: cfg.Credentials}, Bucket: "x", Prefix: "y"}, plain},
			{"url query", Config{}, plain + "?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region},
		}
		for _, tc := range tests {
			t.Run(img.Label+"/"+tc.name, func(t *testing.T) {
				dst := filepath.Join(t.TempDir(), "image")
				arts, digest, err := Fetch(ctx, tc.cfg, tc.url, dst)
				if err != nil {
					t.Fatalf("Fetch() error: %v", err)
				}
				if digest != wantDigest {
					t.Errorf("Fetch() manifest digest = %s, want %s", digest, wantDigest)
				}
				checkFetched(t, arts, dst, img)
				got, err := ManifestDigest(ctx, tc.cfg, tc.url)
				if err != nil || got != wantDigest {
					t.Errorf("ManifestDigest() = %q, %v; want %q", got, err, wantDigest)
				}
			})
		}
	}
}

// A real squashfs made by mksquashfs comes back byte-identical and unpacks.
func TestFetchSquashfs(t *testing.T) {
	mksquashfs := testutil.RequireTool(t, "mksquashfs")
	unsquashfs := testutil.RequireTool(t, "unsquashfs")
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	root := testutil.BusyboxRoot(t, true)
	sqfs := filepath.Join(t.TempDir(), "rootfs")
	run(t, mksquashfs, root, sqfs, "-noappend", "-reproducible", "-mkfs-time", "0", "-all-time", "0", "-comp", "zstd", "-quiet")
	store := newFileStore(t)
	rootfs := putFile(t, store, sqfs)
	kernel := putFile(t, store, filepath.Join(root, "boot/vmlinuz-6.1.0-test"))
	img := publish.Image{Label: "bb", ID: "bbbbbbbb-0000-0000-0000-000000000001", Created: testImages(t, store)[0].Created,
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: rootfs,
			ims.ArtifactKernel: kernel,
		}}
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	dst := t.TempDir()
	arts, _, err := Fetch(ctx, testConfig(srv), p.Link(img.ID, ims.ManifestFile), dst)
	if err != nil {
		t.Fatalf("Fetch() error: %v", err)
	}
	checkFetched(t, arts, dst, img)
	out := run(t, unsquashfs, "-l", arts[ims.ArtifactRootfs].Path)
	if !strings.Contains(out, "squashfs-root/bin/busybox") {
		t.Errorf("unsquashfs -l of the fetched rootfs does not list bin/busybox:\n%s", out)
	}
}

// Artifact links may point into another bucket.
func TestFetchLinksToOtherBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	srv.CreateBucket(t, "manifests")
	store := newFileStore(t)
	img := testImages(t, store)[1]
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	c := srv.Client(t)
	m := readManifestObject(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	putObject(t, c, "manifests", "copy/"+ims.ManifestFile, mustJSON(t, m), nil)
	dst := t.TempDir()
	arts, _, err := Fetch(ctx, testConfig(srv), "s3://manifests/copy/"+ims.ManifestFile, dst)
	if err != nil {
		t.Fatalf("Fetch() error: %v", err)
	}
	checkFetched(t, arts, dst, img)
}

// A manifest may list a debug_kernel (IMS defines it; its jobs never write
// one): Fetch takes it beside the others instead of failing on its type.
func TestFetchDebugKernel(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := testImages(t, store)[0]
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	c := srv.Client(t)
	m := readManifestObject(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	debug := []byte("debug kernel\n")
	putObject(t, c, DefaultBucket, "debug/debug_kernel", debug, map[string]string{MetaMD5: md5hex.Of(debug)})
	// IMS's order: rootfs, kernel, initrd, debug_kernel, [boot_parameters].
	m.Artifacts = append(m.Artifacts[:3:3], append([]ims.Artifact{{
		Link: ims.Link{Path: "s3://" + DefaultBucket + "/debug/debug_kernel", Type: "s3"},
		Type: ims.MediaTypeDebugKernel, MD5: md5hex.Of(debug),
	}}, m.Artifacts[3:]...)...)
	putObject(t, c, DefaultBucket, "debug/"+ims.ManifestFile, mustJSON(t, m), nil)

	url := "s3://" + DefaultBucket + "/debug/" + ims.ManifestFile
	if _, err := ManifestDigest(ctx, testConfig(srv), url); err != nil {
		t.Fatalf("ManifestDigest() error: %v", err)
	}
	dst := t.TempDir()
	arts, _, err := Fetch(ctx, testConfig(srv), url, dst)
	if err != nil {
		t.Fatalf("Fetch() error: %v", err)
	}
	got, ok := arts[ims.ArtifactDebugKernel]
	if !ok {
		t.Fatalf("Fetch() artifacts = %v, want a %s", arts, ims.ArtifactDebugKernel)
	}
	if got.MediaType != ims.MediaTypeDebugKernel || got.Path != filepath.Join(dst, ims.ArtifactDebugKernel) {
		t.Errorf("Fetch() %s = %+v, want media type %s at %s", ims.ArtifactDebugKernel, got, ims.MediaTypeDebugKernel, filepath.Join(dst, ims.ArtifactDebugKernel))
	}
	if data, err := os.ReadFile(got.Path); err != nil || !bytes.Equal(data, debug) {
		t.Errorf("fetched %s = %q, %v; want %q", ims.ArtifactDebugKernel, data, err, debug)
	}
	delete(arts, ims.ArtifactDebugKernel)
	os.Remove(got.Path)
	checkFetched(t, arts, dst, img)
}

// A read cut in the middle of the rootfs resumes with a range request.
func TestFetchResumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := testImages(t, store)[0]
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	ct := &cutTransport{cutKey: "/" + img.ID + "/rootfs", after: 3 << 20}
	cfg := testConfig(srv)
	cfg.HTTPClient = &http.Client{Transport: ct}
	dst := t.TempDir()
	arts, _, err := Fetch(ctx, cfg, p.Link(img.ID, ims.ManifestFile), dst)
	if err != nil {
		t.Fatalf("Fetch() error: %v", err)
	}
	checkFetched(t, arts, dst, img)
	if want := "bytes=3145728-"; !ct.sawRange(want) {
		t.Errorf("requests had ranges %v, want one with %s", ct.ranges, want)
	}
}

// cutTransport breaks the first GET body of a path ending in cutKey after
// `after` bytes and records Range headers.
type cutTransport struct {
	cutKey string
	after  int64
	mu     sync.Mutex
	cut    bool
	ranges []string
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rg := r.Header.Get("Range"); rg != "" {
		c.ranges = append(c.ranges, rg)
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, c.cutKey) && !c.cut {
		c.cut = true
		resp.Body = &cutBody{rc: resp.Body, left: c.after}
	}
	return resp, nil
}

func (c *cutTransport) sawRange(want string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.ranges {
		if r == want {
			return true
		}
	}
	return false
}

type cutBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset (test)")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cutBody) Close() error { return b.rc.Close() }

func TestFetchErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := testImages(t, store)[0]
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	c := srv.Client(t)
	good := readManifestObject(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	edit := func(f func(m *ims.Manifest)) []byte {
		var m ims.Manifest
		if err := json.Unmarshal(mustJSON(t, good), &m); err != nil {
			t.Fatal(err)
		}
		f(&m)
		return mustJSON(t, &m)
	}
	// The kernel (second) has a wrong md5 in the manifest, so the rootfs
	// is already downloaded when Fetch fails.
	putObject(t, c, "boot-images", "bad-md5/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[1].MD5 = strings.Repeat("0", 32)
	}), nil)
	putObject(t, c, "boot-images", "missing/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[2].Link.Path = "s3://boot-images/missing/initrd"
	}), nil)
	putObject(t, c, "boot-images", "two-rootfs/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[1].Type = ims.MediaTypeRootfs
	}), nil)
	putObject(t, c, "boot-images", "unknown-type/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[1].Type = "application/x-other"
	}), nil)
	putObject(t, c, "boot-images", "not-json/manifest.json", []byte("{"), nil)
	// The object's md5sum metadata disagrees with the manifest (and the
	// content): the object was replaced after the manifest was written.
	putObject(t, c, "boot-images", "meta/kernel", []byte("other kernel\n"), map[string]string{MetaMD5: md5hex.Of([]byte("other kernel\n"))})
	putObject(t, c, "boot-images", "meta/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[1].Link.Path = "s3://boot-images/meta/kernel"
	}), nil)
	// Content changed without metadata: only the content md5 catches it.
	putObject(t, c, "boot-images", "nometa/kernel", []byte("other kernel\n"), nil)
	putObject(t, c, "boot-images", "nometa/manifest.json", edit(func(m *ims.Manifest) {
		m.Artifacts[1].Link.Path = "s3://boot-images/nometa/kernel"
	}), nil)

	tests := []struct {
		name       string
		url        string
		is         error
		want       []string
		manifestOK bool // only an artifact is wrong
	}{
		{"md5 mismatch", "s3://boot-images/bad-md5/manifest.json", publish.ErrCorrupt,
			[]string{"fetch s3://boot-images/bad-md5/manifest.json: kernel: get s3://boot-images/" + img.ID + "/kernel", "md5sum metadata is"}, true},
		{"metadata md5 mismatch", "s3://boot-images/meta/manifest.json", publish.ErrCorrupt,
			[]string{"s3://boot-images/meta/kernel: md5sum metadata is " + md5hex.Of([]byte("other kernel\n"))}, true},
		{"content md5 mismatch", "s3://boot-images/nometa/manifest.json", publish.ErrCorrupt,
			[]string{"s3://boot-images/nometa/kernel: content md5 is " + md5hex.Of([]byte("other kernel\n"))}, true},
		{"missing artifact", "s3://boot-images/missing/manifest.json", ErrNotFound,
			[]string{"fetch s3://boot-images/missing/manifest.json: initrd: get s3://boot-images/missing/initrd"}, true},
		{"missing manifest", "s3://boot-images/nothing/manifest.json", ErrNotFound,
			[]string{"get s3://boot-images/nothing/manifest.json"}, false},
		{"missing bucket", "s3://no-such-bucket/x/manifest.json", ErrNoSuchBucket,
			[]string{"s3://no-such-bucket/x/manifest.json", `bucket "no-such-bucket" does not exist`}, false},
		{"two rootfs", "s3://boot-images/two-rootfs/manifest.json", nil,
			[]string{"fetch s3://boot-images/two-rootfs/manifest.json: invalid image manifest", "2 rootfs artifacts"}, false},
		{"unknown type", "s3://boot-images/unknown-type/manifest.json", nil,
			[]string{"fetch s3://boot-images/unknown-type/manifest.json: artifact 1: unknown media type"}, false},
		{"not json", "s3://boot-images/not-json/manifest.json", nil,
			[]string{"fetch s3://boot-images/not-json/manifest.json: parse image manifest"}, false},
		{"bad url", "s3://boot-images/x?endpiont=http://x", nil, []string{`unknown parameter "endpiont"`}, false},
		{"no key", "s3://boot-images", nil, []string{"not s3://bucket/key"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			_, _, err := Fetch(ctx, testConfig(srv), tc.url, dst)
			if err == nil {
				t.Fatal("Fetch() error = nil, want an error")
			}
			t.Logf("Fetch() error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Fetch() error = %v, want errors.Is %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Fetch() error = %q, want it to contain %q", err, w)
				}
			}
			if entries, _ := os.ReadDir(dst); len(entries) != 0 {
				t.Errorf("dst holds %d entries after a failed Fetch, want none", len(entries))
			}
			if tc.manifestOK {
				return
			}
			if _, err := ManifestDigest(ctx, testConfig(srv), tc.url); err == nil {
				t.Errorf("ManifestDigest() error = nil, want an error")
			}
		})
	}
}

func TestDownload(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ims")
	c := srv.Client(t)
	data := []byte("recipe bytes\n")
	putObject(t, c, "ims", "recipes/r/recipe.tgz", data, map[string]string{MetaMD5: md5hex.Of(data)})
	dst := filepath.Join(t.TempDir(), "recipe.tgz")
	url := "s3://ims/recipes/r/recipe.tgz"
	a, err := Download(ctx, testConfig(srv), url, dst, "")
	if err != nil {
		t.Fatalf("Download() error: %v", err)
	}
	sum := sha256.Sum256(data)
	want := FetchedArtifact{Name: "recipe.tgz", Path: dst, MediaType: "application/octet-stream",
		MD5: md5hex.Of(data), SHA256: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(data))}
	if diff := cmp.Diff(want, a); diff != "" {
		t.Errorf("Download() mismatch (-want +got):\n%s", diff)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Errorf("downloaded %q, want %q", got, data)
	}
	other := filepath.Join(filepath.Dir(dst), "other.tgz")
	if _, err := Download(ctx, testConfig(srv), url, other, strings.Repeat("a", 32)); !errors.Is(err, publish.ErrCorrupt) {
		t.Errorf("Download(wrong md5) error = %v, want ErrCorrupt", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the first download", len(entries))
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		raw     string
		cfg     Config
		url     string
		wantErr string
	}{
		{raw: "s3://boot-images/id/manifest.json", url: "s3://boot-images/id/manifest.json"},
		{raw: "s3://b", url: "s3://b/"},
		{raw: "s3://b/k?endpoint=http://127.0.0.1:7070&path_style=true&region=eu&ca_bundle=/ca.pem",
			cfg: Config{Config: s3client.Config{Endpoint: "http://127.0.0.1:7070", PathStyle: true, Region: "eu", CABundle: "/ca.pem"}}, url: "s3://b/k"},
		{raw: "s3://b/k?path_style=1", cfg: Config{Config: s3client.Config{PathStyle: true}}, url: "s3://b/k"},
		{raw: "s3://b/k?path_style=yes", wantErr: `path_style="yes" is not true or false`},
		{raw: "s3://b/k?bucket=x", wantErr: `unknown parameter "bucket"`},
		{raw: "s3://b/k?region=a&region=b", wantErr: "parameter region given 2 times"},
		{raw: "http://b/k", wantErr: "want s3://bucket/key"},
		{raw: "s3:///k", wantErr: "want s3://bucket/key"},
		{raw: "s3://u@b/k", wantErr: "want s3://bucket/key"},
		{raw: "s3://b/k#frag", wantErr: "want s3://bucket/key"},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			cfg, url, err := ParseURL(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseURL(%q) error = %v, want %q", tc.raw, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q) error: %v", tc.raw, err)
			}
			if url != tc.url {
				t.Errorf("ParseURL(%q) url = %q, want %q", tc.raw, url, tc.url)
			}
			if diff := cmp.Diff(tc.cfg, cfg, cmp.AllowUnexported(Config{})); diff != "" {
				t.Errorf("ParseURL(%q) config mismatch (-want +got):\n%s", tc.raw, diff)
			}
		})
	}
}

func readManifestObject(t testing.TB, c *s3.Client, bucket, key string) *ims.Manifest {
	t.Helper()
	o, err := getObject(t, c, bucket, key)
	if err != nil {
		t.Fatalf("GetObject(%s) error: %v", key, err)
	}
	m, err := ims.ParseManifest(o.data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func putObject(t testing.TB, c *s3.Client, bucket, key string, data []byte, meta map[string]string) {
	t.Helper()
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data), Metadata: meta,
	})
	if err != nil {
		t.Fatalf("PutObject(%s/%s) error: %v", bucket, key, err)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs a tool and returns its combined output, failing the test on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
