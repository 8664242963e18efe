package faultproxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/faultproxy"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
	"github.com/imsbuild/imsbuild/publish/publishtest"
	"github.com/imsbuild/imsbuild/publish/s3"
)

// testTimeout bounds each fault test.
const testTimeout = 60 * time.Second

// testImage stores a 12 MiB rootfs (three 5 MiB parts), a kernel and an
// initrd and returns an image of them.
func testImage(t *testing.T) (publish.Blobs, publish.Image) {
	t.Helper()
	store := publishtest.New(t)
	img := publish.Image{
		Label: "compute", Name: "compute-bookworm", Arch: "x86_64",
		ID:      "0fa17e57-0000-4000-8000-000000000001",
		Key:     strings.Repeat("ab", 32),
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: put(t, store, ims.ArtifactRootfs, 1, 12<<20+4321),
			ims.ArtifactKernel: put(t, store, ims.ArtifactKernel, 2, 64<<10),
			ims.ArtifactInitrd: put(t, store, ims.ArtifactInitrd, 3, 300<<10),
		},
	}
	return store, img
}

// put stores size pseudo-random bytes and returns their output with md5.
func put(t *testing.T, store *publishtest.Blobs, name string, seed uint64, size int64) publish.Artifact {
	t.Helper()
	var key [32]byte
	key[0] = byte(seed)
	return store.AddReader(t, name, io.LimitReader(rand.NewChaCha8(key), size))
}

func hostOf(t *testing.T, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// s3Publisher publishes to bucket boot-images through the proxy.
func s3Publisher(t *testing.T, srv *s3test.Server, px *faultproxy.Proxy) *s3.Publisher {
	t.Helper()
	p, err := s3.New(t.Context(), s3.Config{Config: s3client.Config{
		Endpoint:    px.URL(),
		Region:      srv.Region,
		PathStyle:   true,
		PartSize:    s3.MinPartSize,
		Concurrency: 2,
		MaxAttempts: 8, // concurrent requests can land on several faulty counts in a row
		MaxBackoff:  50 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	}})
	if err != nil {
		t.Fatalf("s3.New() error: %v", err)
	}
	return p
}

// Every 3rd request failing with 500 and one connection reset in the middle
// of a part upload: the SDK's retries carry the publish through, and the
// manifest on the server describes exactly what was uploaded.
func TestS3PublishSurvivesFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, s3.DefaultBucket)
	store, img := testImage(t)
	px := faultproxy.Start(t, hostOf(t, srv.Endpoint), faultproxy.Faults{Status500Every: 3, ResetAfterBytes: 1 << 20})

	if err := s3Publisher(t, srv, px).Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() through faults error: %v", err)
	}
	st := px.Stats()
	t.Logf("proxy stats: %+v", st)
	if st.Status500 == 0 || st.Resets != 1 {
		t.Errorf("Stats() = %+v, want some 500s and exactly 1 reset", st)
	}
	checkS3Manifest(ctx, t, srv.Client(t), img)
}

// checkS3Manifest reads the manifest straight from the server and checks it
// against the image and against the objects it links.
func checkS3Manifest(ctx context.Context, t *testing.T, c *awss3.Client, img publish.Image) {
	t.Helper()
	raw := getObject(ctx, t, c, img.ID+"/"+ims.ManifestFile)
	m, err := ims.ParseManifest(raw)
	if err != nil {
		t.Fatalf("manifest: %v\n%s", err, raw)
	}
	if len(m.Artifacts) != len(img.Outputs) {
		t.Errorf("manifest has %d artifacts, want %d", len(m.Artifacts), len(img.Outputs))
	}
	for _, a := range m.Artifacts {
		name := a.Link.Path[strings.LastIndex(a.Link.Path, "/")+1:]
		out, ok := img.Outputs[name]
		if !ok {
			t.Errorf("manifest links unknown artifact %s", a.Link.Path)
			continue
		}
		if want := "s3://" + s3.DefaultBucket + "/" + img.ID + "/" + name; a.Link.Path != want {
			t.Errorf("link path %s, want %s", a.Link.Path, want)
		}
		if a.MD5 != out.MD5 || a.Type != ims.MediaTypeOf(name) {
			t.Errorf("%s: md5 %s type %s, want %s %s", name, a.MD5, a.Type, out.MD5, ims.MediaTypeOf(name))
		}
		key := img.ID + "/" + name
		h, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s3.DefaultBucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("HeadObject(%s) error: %v", key, err)
		}
		if etag := strings.Trim(aws.ToString(h.ETag), `"`); etag != a.Link.Etag {
			t.Errorf("%s: manifest etag %s, object etag %s", name, a.Link.Etag, etag)
		}
		sum := sha256.Sum256(getObject(ctx, t, c, key))
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != string(out.Digest) {
			t.Errorf("%s: object content %s, want %s", name, got, out.Digest)
		}
	}
}

func getObject(ctx context.Context, t *testing.T, c *awss3.Client, key string) []byte {
	t.Helper()
	out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(s3.DefaultBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject(%s) error: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body) // test objects are at most 12 MiB
	if err != nil {
		t.Fatalf("GetObject(%s) read: %v", key, err)
	}
	return b
}

// Every request (or every upload) failing with 500: Publish gives up with an
// error naming the operation, bucket and key, and leaves no manifest.
func TestS3PublishAll500(t *testing.T) {
	tests := []struct {
		name string
		only func(*http.Request) bool
		want []string // substrings of the error
	}{{
		name: "every request",
		want: []string{"publish s3", "head bucket s3://" + s3.DefaultBucket, "StatusCode: 500"},
	}, {
		name: "uploads",
		only: func(r *http.Request) bool { return r.Method == http.MethodPut || r.Method == http.MethodPost },
		want: []string{"publish s3 image compute", "put s3://" + s3.DefaultBucket + "/", "StatusCode: 500"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv := s3test.Start(t)
			srv.CreateBucket(t, s3.DefaultBucket)
			store, img := testImage(t)
			px := faultproxy.Start(t, hostOf(t, srv.Endpoint), faultproxy.Faults{Status500Every: 1, Only: tc.only})

			err := s3Publisher(t, srv, px).Publish(ctx, store, []publish.Image{img})
			if err == nil {
				t.Fatal("Publish() with every request failing: error = nil")
			}
			t.Logf("Publish() error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Publish() error = %q, want it to contain %q", err, w)
				}
			}
			if st := px.Stats(); st.Status500 == 0 || st.Forwarded > 0 && tc.only == nil {
				t.Errorf("Stats() = %+v, want only 500s", st)
			}
			key := img.ID + "/" + ims.ManifestFile
			_, err = srv.Client(t).HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(s3.DefaultBucket), Key: aws.String(key)})
			if err == nil {
				t.Errorf("HeadObject(%s) found a manifest after a failed publish", key)
			} else if !strings.Contains(err.Error(), "404") {
				t.Errorf("HeadObject(%s) error = %v, want 404", key, err)
			}
		})
	}
}

// anonymous resolves every registry to no credentials, so the tests do not
// read the Docker config.
var anonymous = authn.NewMultiKeychain()

// OCI push through 500s and dropped connections completes, and the
// registry holds the image. (A period of exactly 4 would fail every
// attempt: ggcr retries a blob upload as HEAD, POST, PATCH, PUT — four
// requests — so a deterministic 1-in-4 fault hits each retry the same way.)
func TestOCIPushSurvivesFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults faultproxy.Faults
	}{
		{name: "every 10th 500", faults: faultproxy.Faults{Status500Every: 10}},
		{name: "every 7th 500", faults: faultproxy.Faults{Status500Every: 7}},
		{name: "every 10th dropped", faults: faultproxy.Faults{DropEvery: 10}},
		{name: "every 6th 500", faults: faultproxy.Faults{Status500Every: 6}},
		{name: "every 5th dropped", faults: faultproxy.Faults{DropEvery: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			reg := registrytest.Start(t)
			store, img := testImage(t)
			px := faultproxy.Start(t, reg.Host, tc.faults)
			p, err := oci.New(oci.Config{Repository: px.Addr + "/hpc/compute", Tags: []string{"v1"}}, oci.WithKeychain(anonymous))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.PushImage(ctx, store, img); err != nil {
				t.Fatalf("PushImage() through faults error: %v", err)
			}
			st := px.Stats()
			t.Logf("proxy stats: %+v", st)
			if st.Injected() == 0 {
				t.Errorf("Stats() = %+v, want injected faults", st)
			}
			// Straight from the registry, not through the proxy.
			got, err := oci.Pull(ctx, reg.Ref("hpc/compute")+":v1", t.TempDir(), true, oci.WithKeychain(anonymous))
			if err != nil {
				t.Fatalf("Pull() from the registry error: %v", err)
			}
			for name, out := range img.Outputs {
				if a, ok := got[name]; !ok || a.Digest != out.Digest || a.Size != out.Size {
					t.Errorf("pulled %s = %+v, want digest %s size %d", name, got[name], out.Digest, out.Size)
				}
			}
		})
	}
}

// Every registry request failing with 500: the push fails with an error
// naming the registry and repository, and no tag exists.
func TestOCIPushAll500(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	reg := registrytest.Start(t)
	store, img := testImage(t)
	px := faultproxy.Start(t, reg.Host, faultproxy.Faults{Status500Every: 1})
	p, err := oci.New(oci.Config{Repository: px.Addr + "/hpc/compute", Tags: []string{"v1"}}, oci.WithKeychain(anonymous))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.PushImage(ctx, store, img)
	if err == nil {
		t.Fatal("PushImage() with every request failing: error = nil")
	}
	t.Logf("PushImage() error: %v", err)
	// The image manifest goes first, by digest; the tags last.
	for _, w := range []string{"push " + px.Addr + "/hpc/compute@sha256:", "500"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("PushImage() error = %q, want it to contain %q", err, w)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PushImage() ran into the test deadline: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, reg.URL()+"/v2/hpc/compute/manifests/v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD manifests/v1 on the registry = %s, want 404 (no tag)", resp.Status)
	}
}
