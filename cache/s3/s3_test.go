package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/cachetest"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

const testTimeout = 3 * time.Minute

const bucket = "cache"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func startServer(t *testing.T) *s3test.Server {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, bucket)
	return srv
}

func testOptions(srv *s3test.Server) Options {
	return Options{Config: s3client.Config{
		Endpoint:    srv.Endpoint,
		Region:      srv.Region,
		PathStyle:   true,
		PartSize:    MinPartSize,
		Concurrency: 2,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	}}
}

var prefixes atomic.Int64

// openCache opens a cache under a fresh prefix of the test bucket.
func openCache(t *testing.T, srv *s3test.Server, opts Options) *Cache {
	t.Helper()
	url := fmt.Sprintf("s3://%s/ci/run%d", bucket, prefixes.Add(1))
	c, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", url, err)
	}
	return c
}

// undamageable makes cachetest skip its file-editing corruption test with a
// reason; TestCorruptBlob damages objects through the S3 API instead.
type undamageable struct {
	*Cache
	t *testing.T
}

func (u undamageable) BlobPath(cache.Digest) string {
	u.t.Skip("S3 objects are not files; TestCorruptBlob overwrites them through the S3 API")
	return ""
}

func TestConformance(t *testing.T) {
	srv := startServer(t)
	cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) {
		c := openCache(t, srv, testOptions(srv))
		return undamageable{c, t}, c.Actions()
	})
	// A remote cache locks nothing (see cache.Locker) and must not claim to.
	if l, ok := openCache(t, srv, testOptions(srv)).Actions().(cache.Locker); ok {
		t.Errorf("Actions() is a cache.Locker (%T), but remote caches hold no lock across runners", l)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url, bucket, prefix string
		wantErr             bool
	}{
		{url: "s3://ci-cache/imsbuild", bucket: "ci-cache", prefix: "imsbuild"},
		{url: "s3://ci-cache/a/b/", bucket: "ci-cache", prefix: "a/b"},
		{url: "s3://ci-cache", bucket: "ci-cache"},
		{url: "s3://ci-cache/", bucket: "ci-cache"},
		{url: "oci://reg/repo", wantErr: true},
		{url: "s3:///prefix", wantErr: true},
		{url: "s3://b/p?x=1", wantErr: true},
		{url: "s3://b/a//b", wantErr: true},
		{url: "/tmp/cache", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			b, p, err := ParseURL(tc.url)
			if (err != nil) != tc.wantErr || b != tc.bucket || p != tc.prefix {
				t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q, error %v", tc.url, b, p, err, tc.bucket, tc.prefix, tc.wantErr)
			}
		})
	}
}

func TestNameAndKeys(t *testing.T) {
	c, err := Open(t.Context(), "s3://ci-cache/imsbuild/", Options{Config: s3client.Config{Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}})
	if err != nil {
		t.Fatal(err)
	}
	d := cachetest.Digest([]byte("abc"))
	for _, tc := range []struct{ got, want string }{
		{c.Name(), "s3://ci-cache/imsbuild"},
		{c.BlobKey(d), "imsbuild/blobs/sha256/ba/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{c.ActionKey("k1"), "imsbuild/actions/k1.json"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if _, err := Open(t.Context(), "s3://b/p", Options{Config: s3client.Config{PartSize: 1 << 20}}); err == nil {
		t.Errorf("Open(part size 1 MiB) = nil error")
	}
}

// overwrite replaces the object at key with body, without our metadata.
func overwrite(t *testing.T, srv *s3test.Server, key string, body []byte) {
	t.Helper()
	_, err := srv.Client(t).PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body),
	})
	if err != nil {
		t.Fatalf("PutObject(%s) = %v", key, err)
	}
}

func TestCorruptBlob(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	c := openCache(t, srv, testOptions(srv))
	content := "squashfs image"
	d, _, err := c.Put(ctx, strings.NewReader(content), "")
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, srv, c.BlobKey(d), bytes.Repeat([]byte{'X'}, len(content)))

	rc, err := c.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("reading a corrupt blob = %v, want ErrCorrupt", err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := c.Materialize(ctx, d, dst, false); !errors.Is(err, cache.ErrCorrupt) {
		t.Errorf("Materialize(corrupt) = %v, want ErrCorrupt", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 0 {
		t.Errorf("Materialize(corrupt) left %d files", len(ents))
	}
	// The damaged object lacks our sha256 metadata, so a Put heals it.
	if _, _, err := c.Put(ctx, strings.NewReader(content), d); err != nil {
		t.Fatalf("Put() again = %v", err)
	}
	rc, err = c.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != content {
		t.Errorf("read after re-put = %q, %v; want %q", got, err, content)
	}
}

// TestLocalLayout syncs a local cache directory to the bucket file by file,
// as `aws s3 sync` would, and reads it back through the S3 cache.
func TestLocalLayout(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	lc, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rootfs, _, err := lc.Put(ctx, strings.NewReader("rootfs bytes"), "")
	if err != nil {
		t.Fatal(err)
	}
	logd, _, err := lc.Put(ctx, strings.NewReader("build log"), "")
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Repeat("5a", 32)
	want := &cache.ActionResult{
		Step:    "image.base/pack",
		Outputs: map[string]cache.Output{"rootfs": {Digest: rootfs, Size: 12, MediaType: "application/vnd.cray.image.rootfs.squashfs", MD5: "ab"}},
		Builder: "pack/v1",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Log:     logd,
	}
	pre := []byte(`{"type":"imsbuild/pack/v1","html":"<&>"}`)
	if err := lc.Actions().Put(ctx, key, pre, want); err != nil {
		t.Fatal(err)
	}
	if err := lc.Actions().SetLastKey(ctx, "image.base/pack", key, pre); err != nil {
		t.Fatal(err)
	}
	c := openCache(t, srv, testOptions(srv))
	prefix := strings.TrimPrefix(c.Name(), "s3://"+bucket+"/") + "/"
	for _, dir := range []string{"blobs", "actions", "steps"} {
		err := filepath.WalkDir(filepath.Join(lc.Dir(), dir), func(p string, de os.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(lc.Dir(), p)
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			overwrite(t, srv, prefix+filepath.ToSlash(rel), data)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Actions().Get(ctx, key)
	if err != nil {
		t.Fatalf("Get() of a synced action = %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get() mismatch (-want +got):\n%s", diff)
	}
	if k, p, err := c.Actions().LastKey(ctx, "image.base/pack"); err != nil || k != key || string(p) != string(pre) {
		t.Errorf("LastKey() = %s, %s, %v; want %s, %s", k, p, err, key, pre)
	}
	dst := filepath.Join(t.TempDir(), "rootfs")
	if err := c.Materialize(ctx, rootfs, dst, true); err != nil {
		t.Fatalf("Materialize() = %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "rootfs bytes" {
		t.Errorf("materialized %q", b)
	}
}

func TestGetChecksBlobsInParallel(t *testing.T) {
	srv := startServer(t)
	bt := cachetest.NewHeadBarrier()
	opts := testOptions(srv)
	opts.HTTPClient = &http.Client{Transport: bt}
	c := openCache(t, srv, opts)
	cachetest.ParallelGet(t, c, c.Actions(), bt)
}

func TestGetMissOnDamagedRecord(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	c := openCache(t, srv, testOptions(srv))
	d, n, err := c.Put(ctx, strings.NewReader("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	res := &cache.ActionResult{Step: "s", Outputs: map[string]cache.Output{"rootfs": {Digest: d, Size: n}}}
	tests := []struct {
		name string
		data string
	}{
		{name: "truncated", data: `{"result":{"outputs":`},
		{name: "bad digest", data: `{"result":{"outputs":{"rootfs":{"digest":"sha256:zz"}}}}`},
		{name: "not json", data: "\x00\x01"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("%064x", i+10)
			if err := c.Actions().Put(ctx, key, nil, res); err != nil {
				t.Fatal(err)
			}
			overwrite(t, srv, c.ActionKey(key), []byte(tc.data))
			if _, err := c.Actions().Get(ctx, key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get(%s record) = %v, want ErrNotFound", tc.name, err)
			}
		})
	}
}

func TestPutLargeWrongDigestAborts(t *testing.T) {
	ctx := testContext(t)
	srv := startServer(t)
	c := openCache(t, srv, testOptions(srv))
	body := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16) // 12 MiB: three parts
	wrong := cachetest.Digest([]byte("something else"))
	if _, _, err := c.Put(ctx, bytes.NewReader(body), wrong); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("Put(12 MiB, wrong digest) = %v, want ErrCorrupt", err)
	}
	for _, d := range []cache.Digest{wrong, cachetest.Digest(body)} {
		if _, err := c.Stat(ctx, d); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("Stat(%s) after a refused Put = %v, want ErrNotFound", d, err)
		}
	}
	out, err := srv.Client(t).ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Uploads) != 0 {
		t.Errorf("%d multipart uploads left after a refused Put", len(out.Uploads))
	}
}
