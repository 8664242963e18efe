package tiered

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/cachetest"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/oci"
	"github.com/imsbuild/imsbuild/cache/s3"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

var (
	_ Remote = (*s3.Cache)(nil)
	_ Remote = (*oci.Cache)(nil)
)

const testTimeout = 3 * time.Minute

// backend is a real remote server with ways to damage what it stores.
type backend struct {
	remote  Remote
	delete  func(t *testing.T, d cache.Digest)          // remove blob d
	corrupt func(t *testing.T, d cache.Digest, n int64) // overwrite blob d with n other bytes
	broken  Remote                                      // a remote that cannot be written
	fresh   func() Remote                               // a new, empty remote on the same server
}

var seq atomic.Int64

func s3Backend(t *testing.T) backend {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	opts := s3.Options{Config: s3client.Config{
		Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
		MaxAttempts: 1,
	}}
	open := func(url string) *s3.Cache {
		c, err := s3.Open(t.Context(), url, opts)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open(fmt.Sprintf("s3://ci-cache/imsbuild%d", seq.Add(1)))
	put := func(t *testing.T, d cache.Digest, body []byte) {
		_, err := srv.Client(t).PutObject(t.Context(), &awss3.PutObjectInput{
			Bucket: aws.String(c.Bucket()), Key: aws.String(c.BlobKey(d)), Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return backend{
		remote: c,
		delete: func(t *testing.T, d cache.Digest) {
			_, err := srv.Client(t).DeleteObject(t.Context(), &awss3.DeleteObjectInput{
				Bucket: aws.String(c.Bucket()), Key: aws.String(c.BlobKey(d))})
			if err != nil {
				t.Fatal(err)
			}
		},
		corrupt: func(t *testing.T, d cache.Digest, n int64) { put(t, d, bytes.Repeat([]byte{'X'}, int(n))) },
		broken:  open("s3://no-such-bucket/imsbuild"),
		fresh:   func() Remote { return open(fmt.Sprintf("s3://ci-cache/imsbuild%d", seq.Add(1))) },
	}
}

func ociBackend(t *testing.T) backend {
	reg := registrytest.Start(t)
	open := func(url string) *oci.Cache {
		c, err := oci.Open(t.Context(), url, oci.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	repo := fmt.Sprintf("ci/cache%d", seq.Add(1))
	return backend{
		remote: open("oci://" + reg.Ref(repo)),
		delete: func(t *testing.T, d cache.Digest) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, reg.URL()+"/v2/"+repo+"/blobs/"+string(d), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("DELETE blob %s: %s", d, resp.Status)
			}
		},
		corrupt: func(t *testing.T, d cache.Digest, n int64) {
			p := filepath.Join(reg.Dir, "docker/registry/v2/blobs/sha256", d.Hex()[:2], d.Hex(), "data")
			if err := os.WriteFile(p, bytes.Repeat([]byte{'X'}, int(n)), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		// Port 1 on loopback refuses connections.
		broken: open("oci://127.0.0.1:1/ci/cache"),
		fresh:  func() Remote { return open("oci://" + reg.Ref(fmt.Sprintf("ci/cache%d", seq.Add(1)))) },
	}
}

var backends = []struct {
	name  string
	start func(t *testing.T) backend
}{
	{"s3", s3Backend},
	{"oci", ociBackend},
}

func openLocal(t *testing.T) *local.Cache {
	t.Helper()
	c, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// localBlobs counts the blob files of a local cache.
func localBlobs(t *testing.T, c *local.Cache) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(c.Dir(), "blobs"), func(_ string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// warnings collects OnWarning errors.
type warnings struct {
	mu   sync.Mutex
	errs []error
}

func (w *warnings) add(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}

func (w *warnings) get() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

func put(t *testing.T, ctx context.Context, s cache.Store, content string) cache.Output {
	t.Helper()
	d, n, err := s.Put(ctx, strings.NewReader(content), "")
	if err != nil {
		t.Fatal(err)
	}
	return cache.Output{Digest: d, Size: n, MediaType: "application/vnd.cray.image.rootfs.squashfs"}
}

func readAll(ctx context.Context, s cache.Store, d cache.Digest) (string, error) {
	rc, err := s.Open(ctx, d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func TestShareBetweenRunners(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("real-server test skipped in -short mode")
			}
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			b := be.start(t)
			var warnA warnings

			// Runner A builds two steps and writes them through.
			a := New(openLocal(t), nil, b.remote, WithOnWarning(warnA.add))
			rootfs := put(t, ctx, a, "rootfs of base")
			kernel := put(t, ctx, a, "kernel")
			logd := put(t, ctx, a, "build log")
			rootfs2 := put(t, ctx, a, "rootfs of compute, a bit longer")
			created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			res1 := &cache.ActionResult{Step: "image.base/pack", Builder: "pack/v1", Created: created, Log: logd.Digest,
				Outputs: map[string]cache.Output{"rootfs": rootfs, "kernel": kernel}}
			res2 := &cache.ActionResult{Step: "image.compute/pack", Builder: "pack/v1", Created: created,
				Outputs: map[string]cache.Output{"rootfs": rootfs2, "kernel": kernel}}
			key1, key2 := strings.Repeat("1a", 32), strings.Repeat("2b", 32)
			for key, res := range map[string]*cache.ActionResult{key1: res1, key2: res2} {
				if err := a.Actions().Put(ctx, key, []byte(`{"k":"`+key+`"}`), res); err != nil {
					t.Fatalf("A: Put(%s) = %v", key, err)
				}
			}
			if got, want := a.Stats(), (Stats{BlobsUploaded: 4, BytesUploaded: rootfs.Size + kernel.Size + logd.Size + rootfs2.Size, ActionsUploaded: 2}); got != want {
				t.Errorf("A: Stats() = %+v, want %+v (each blob uploaded once)", got, want)
			}
			if w := warnA.get(); len(w) != 0 {
				t.Errorf("A: warnings %v", w)
			}

			// Runner B starts empty: both steps hit without moving a blob.
			lb := openLocal(t)
			bc := New(lb, []Remote{b.remote}, nil)
			for key, want := range map[string]*cache.ActionResult{key1: res1, key2: res2} {
				got, err := bc.Actions().Get(ctx, key)
				if err != nil {
					t.Fatalf("B: Get(%s) = %v", key, err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("B: Get(%s) (-want +got):\n%s", key, diff)
				}
			}
			if st := bc.Stats(); st.BlobsDownloaded != 0 || st.RemoteHits != 2 || localBlobs(t, lb) != 0 {
				t.Errorf("B: after two hits Stats() = %+v, %d local blobs; want 2 hits and nothing downloaded", st, localBlobs(t, lb))
			}
			// Stat answers without downloading.
			if n, err := bc.Stat(ctx, rootfs.Digest); err != nil || n != rootfs.Size || bc.Stats().BlobsDownloaded != 0 {
				t.Errorf("B: Stat(rootfs) = %d, %v, %d downloads; want %d, no download", n, err, bc.Stats().BlobsDownloaded, rootfs.Size)
			}
			// Reading one output downloads exactly that blob, once.
			for range 2 {
				if got, err := readAll(ctx, bc, rootfs.Digest); err != nil || got != "rootfs of base" {
					t.Fatalf("B: read rootfs = %q, %v", got, err)
				}
			}
			if st := bc.Stats(); st.BlobsDownloaded != 1 || st.BytesDownloaded != rootfs.Size || localBlobs(t, lb) != 1 {
				t.Errorf("B: after reading rootfs Stats() = %+v, %d local blobs; want exactly 1 blob of %d bytes", st, localBlobs(t, lb), rootfs.Size)
			}
			dst := filepath.Join(t.TempDir(), "boot", "kernel")
			if err := bc.Materialize(ctx, kernel.Digest, dst, true); err != nil {
				t.Fatalf("B: Materialize(kernel) = %v", err)
			}
			if got, _ := os.ReadFile(dst); string(got) != "kernel" || bc.Stats().BlobsDownloaded != 2 {
				t.Errorf("B: materialized %q with %d downloads; want kernel, 2", got, bc.Stats().BlobsDownloaded)
			}

			// A remote action whose blob was deleted is a miss, not an error.
			b.delete(t, rootfs2.Digest)
			cc := New(openLocal(t), []Remote{b.remote}, nil)
			if _, err := cc.Actions().Get(ctx, key2); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("C: Get(action with a deleted blob) = %v, want ErrNotFound", err)
			}

			// A corrupt remote blob is ErrCorrupt on read, and is not kept.
			b.corrupt(t, logd.Digest, logd.Size)
			lc := openLocal(t)
			cc = New(lc, []Remote{b.remote}, nil)
			if _, err := cc.Actions().Get(ctx, key1); err != nil {
				t.Fatalf("C: Get(key1) = %v", err)
			}
			if _, err := cc.Open(ctx, logd.Digest); !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("C: Open(corrupt blob) = %v, want ErrCorrupt", err)
			}
			dst = filepath.Join(t.TempDir(), "log")
			if err := cc.Materialize(ctx, logd.Digest, dst, false); !errors.Is(err, cache.ErrCorrupt) {
				t.Errorf("C: Materialize(corrupt blob) = %v, want ErrCorrupt", err)
			}
			if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("C: Materialize(corrupt blob) left %s", dst)
			}
			if _, err := lc.Stat(ctx, logd.Digest); !errors.Is(err, cache.ErrNotFound) || localBlobs(t, lc) != 0 {
				t.Errorf("C: local Stat(corrupt blob) = %v with %d local blobs; want ErrNotFound, none", err, localBlobs(t, lc))
			}
			if st := cc.Stats(); st.BlobsDownloaded != 0 {
				t.Errorf("C: Stats() = %+v, want no download counted", st)
			}

			// Runner A's next Put finds its blobs remote and uploads only the record.
			res3 := &cache.ActionResult{Step: "image.other/pack", Builder: "pack/v1", Created: created,
				Outputs: map[string]cache.Output{"kernel": kernel}}
			if err := a.Actions().Put(ctx, strings.Repeat("3c", 32), nil, res3); err != nil {
				t.Fatal(err)
			}
			if st := a.Stats(); st.BlobsUploaded != 4 || st.ActionsUploaded != 3 {
				t.Errorf("A: Stats() = %+v, want no new blob, 3 actions", st)
			}
		})
	}
}

func TestWriteThroughFailureWarns(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("real-server test skipped in -short mode")
			}
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			b := be.start(t)
			var w warnings
			lc := openLocal(t)
			c := New(lc, []Remote{b.broken}, b.broken, WithOnWarning(w.add))
			out := put(t, ctx, c, "rootfs")
			res := &cache.ActionResult{Step: "s", Outputs: map[string]cache.Output{"rootfs": out}, Created: time.Unix(1, 0).UTC()}
			key := strings.Repeat("4d", 32)
			if err := c.Actions().Put(ctx, key, nil, res); err != nil {
				t.Fatalf("Put() with a broken remote = %v, want nil", err)
			}
			if got := w.get(); len(got) != 1 || !strings.Contains(got[0].Error(), b.broken.Name()) {
				t.Errorf("warnings = %v, want one naming %s", got, b.broken.Name())
			}
			if _, err := lc.Actions().Get(ctx, key); err != nil {
				t.Errorf("local Get() = %v, want the result recorded locally", err)
			}
			// Reading through a broken remote: a miss, with a warning.
			if _, err := c.Actions().Get(ctx, strings.Repeat("5e", 32)); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("Get() with a broken remote = %v, want ErrNotFound", err)
			}
		})
	}
}

// healing makes cachetest skip its corruption tests with the reason: the
// remote keeps a good copy of every blob, so a damaged local one is fetched
// again rather than missing. TestLocalCorruptionRefetched covers that.
type healing struct {
	*Cache
	t *testing.T
}

func (h healing) BlobPath(cache.Digest) string {
	h.t.Skip("a damaged local blob heals from the remote's copy; TestLocalCorruptionRefetched checks that")
	return ""
}

func TestConformance(t *testing.T) {
	t.Run("local only", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) {
			c := New(openLocal(t), nil, nil)
			return c, c.Actions()
		})
		cachetest.RunLocker(t, func(t *testing.T) cache.Locker { return New(openLocal(t), nil, nil).Actions() })
	})
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("real-server test skipped in -short mode")
			}
			b := be.start(t)
			cachetest.Run(t, func(t *testing.T) (cache.Store, cache.ActionCache) {
				r := b.fresh() // the suite wants an empty cache each time
				c := New(openLocal(t), []Remote{r}, r)
				return healing{c, t}, c.Actions()
			})
		})
	}
}

// A blob damaged in the local cache is dropped there and fetched again from
// a remote that has a good copy, by Get and by Materialize alike.
func TestLocalCorruptionRefetched(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			if testing.Short() {
				t.Skip("real-server test skipped in -short mode")
			}
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			b := be.start(t)
			lc := openLocal(t)
			c := New(lc, []Remote{b.remote}, b.remote)
			rootfs := put(t, ctx, c, "rootfs of base")
			key := strings.Repeat("6f", 32)
			res := &cache.ActionResult{Step: "image.base", Created: time.Unix(1, 0).UTC(), Outputs: map[string]cache.Output{"rootfs": rootfs}}
			if err := c.Actions().Put(ctx, key, []byte(`{}`), res); err != nil {
				t.Fatal(err)
			}
			damageLocal := func() {
				p := lc.BlobPath(rootfs.Digest)
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, bytes.Repeat([]byte{'X'}, int(rootfs.Size)), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			damageLocal()
			if _, err := c.Actions().Get(ctx, key); err != nil {
				t.Errorf("Get() with a corrupt local blob = %v, want the remote's hit", err)
			}
			dst := filepath.Join(t.TempDir(), "rootfs")
			if err := c.Materialize(ctx, rootfs.Digest, dst, true); err != nil {
				t.Fatalf("Materialize() = %v", err)
			}
			if got, _ := os.ReadFile(dst); string(got) != "rootfs of base" {
				t.Errorf("materialized %q, want the good copy", got)
			}

			// Damaged again after it was fetched: Materialize fetches again.
			damageLocal()
			dst = filepath.Join(t.TempDir(), "rootfs")
			if err := c.Materialize(ctx, rootfs.Digest, dst, true); err != nil {
				t.Fatalf("Materialize() of a corrupt local copy = %v", err)
			}
			if got, _ := os.ReadFile(dst); string(got) != "rootfs of base" {
				t.Errorf("materialized %q, want the good copy", got)
			}
			// And UseFile, whose own errors are never taken for a miss.
			damageLocal()
			var got string
			if err := c.UseFile(ctx, rootfs.Digest, func(p string) error {
				b, err := os.ReadFile(p)
				got = string(b)
				return err
			}); err != nil || got != "rootfs of base" {
				t.Errorf("UseFile() of a corrupt local copy = %v, read %q; want the good copy", err, got)
			}
			calls := 0
			if err := c.UseFile(ctx, rootfs.Digest, func(string) error {
				calls++
				return fmt.Errorf("unsquashfs: %w", cache.ErrNotFound)
			}); !errors.Is(err, cache.ErrNotFound) || calls != 1 {
				t.Errorf("UseFile() whose fn fails = %v after %d calls, want fn's error after 1", err, calls)
			}
			if st := c.Stats(); st.BlobsDownloaded != 3 {
				t.Errorf("Stats() = %+v, want 3 downloads", st)
			}
		})
	}
}
