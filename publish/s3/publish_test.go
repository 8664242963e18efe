package s3

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/publishtest"
)

const testTimeout = 3 * time.Minute

// countingTransport counts requests per HTTP method.
type countingTransport struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Method]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

func (c *countingTransport) reset() {
	c.mu.Lock()
	c.n = nil
	c.mu.Unlock()
}

func testConfig(srv *s3test.Server) Config {
	return Config{Config: s3client.Config{
		Endpoint:    srv.Endpoint,
		Region:      srv.Region,
		PathStyle:   true,
		PartSize:    MinPartSize,
		Concurrency: 2,
		MaxBackoff:  100 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(srv.AccessKey, srv.SecretKey, ""),
	}}
}

func newPublisher(t testing.TB, cfg Config) *Publisher {
	t.Helper()
	p, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New() error: %v", err)
	}
	return p
}

func testImages(t testing.TB, store *publishtest.Blobs) []publish.Image {
	t.Helper()
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return []publish.Image{{
		Label: "base", Name: "node-bookworm", Arch: "x86_64", ID: "11111111-2222-3333-4444-555555555555",
		Created: created,
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs:         putBlob(t, store, 1, 12<<20+12345), // 3 parts of 5 MiB
			ims.ArtifactKernel:         putBytes(t, store, []byte("fake kernel\n")),
			ims.ArtifactInitrd:         putBlob(t, store, 2, 1<<20),
			ims.ArtifactBootParameters: putBytes(t, store, []byte("console=ttyS0\n")),
			"log":                      putBytes(t, store, []byte("not published\n")),
		},
	}, {
		Label: "compute", Name: "node-compute", Arch: "x86_64", ID: "66666666-7777-8888-9999-000000000000",
		Created: created, JobID: "0d1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: putBlob(t, store, 3, 3<<20), // single PUT
			ims.ArtifactKernel: putBytes(t, store, []byte("fake kernel\n")),
			ims.ArtifactInitrd: putBytes(t, store, []byte("fake initrd\n")),
		},
	}}
}

// object reads an object back, hashing it.
type object struct {
	size        int64
	sha256, md5 string
	meta        map[string]string
	etag        string
	modified    time.Time
	data        []byte // only for small objects
}

func getObject(t testing.TB, c *s3.Client, bucket, key string) (*object, error) {
	t.Helper()
	out, err := c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	sh, mh := sha256.New(), md5.New()
	var small strings.Builder
	n, err := io.Copy(io.MultiWriter(sh, mh, limitWriter{&small, 1 << 20}), out.Body)
	if err != nil {
		t.Fatalf("read s3://%s/%s: %v", bucket, key, err)
	}
	return &object{
		size: n, sha256: hex.EncodeToString(sh.Sum(nil)), md5: hex.EncodeToString(mh.Sum(nil)),
		meta: out.Metadata, etag: strings.Trim(aws.ToString(out.ETag), `"`),
		modified: aws.ToTime(out.LastModified), data: []byte(small.String()),
	}, nil
}

type limitWriter struct {
	w *strings.Builder
	n int
}

func (l limitWriter) Write(b []byte) (int, error) {
	if l.w.Len()+len(b) <= l.n {
		l.w.Write(b)
	}
	return len(b), nil
}

func headNotFound(t testing.TB, c *s3.Client, bucket, key string) {
	t.Helper()
	_, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if !s3client.IsNotFound(err) {
		t.Errorf("HeadObject(%s) error = %v, want not found", key, err)
	}
}

// checkPublished reads back every artifact and manifest of images.
func checkPublished(t *testing.T, c *s3.Client, bucket, prefix string, images []publish.Image) map[string]*object {
	t.Helper()
	objs := map[string]*object{}
	for _, img := range images {
		var want []ims.Artifact
		for _, name := range artifactNames {
			out, ok := img.Outputs[name]
			if !ok {
				headNotFound(t, c, bucket, prefix+img.ID+"/"+name)
				continue
			}
			key := prefix + img.ID + "/" + name
			o, err := getObject(t, c, bucket, key)
			if err != nil {
				t.Fatalf("GetObject(%s) error: %v", key, err)
			}
			objs[key] = o
			if o.size != out.Size || o.sha256 != out.Digest.Hex() || o.md5 != out.MD5 {
				t.Errorf("%s: size %d sha256 %s md5 %s, want %d %s %s", key, o.size, o.sha256, o.md5, out.Size, out.Digest.Hex(), out.MD5)
			}
			if o.meta[MetaMD5] != out.MD5 || o.meta[MetaSHA256] != out.Digest.Hex() {
				t.Errorf("%s: metadata %v, want md5sum=%s sha256=%s", key, o.meta, out.MD5, out.Digest.Hex())
			}
			// IMS's job helper tags every artifact with its image (and job).
			jobID, hasJob := o.meta[MetaJobID]
			if o.meta[MetaImageName] != img.Name || o.meta[MetaImageID] != img.ID || jobID != img.JobID || hasJob != (img.JobID != "") {
				t.Errorf("%s: metadata %v, want %s=%s %s=%s and %s=%q (absent when empty)", key, o.meta,
					MetaImageName, img.Name, MetaImageID, img.ID, MetaJobID, img.JobID)
			}
			want = append(want, ims.Artifact{
				Link: ims.Link{Path: "s3://" + bucket + "/" + key, Etag: o.etag, Type: "s3"},
				Type: ims.MediaTypeOf(name), MD5: out.MD5,
			})
		}
		headNotFound(t, c, bucket, prefix+img.ID+"/log")
		key := prefix + img.ID + "/" + ims.ManifestFile
		o, err := getObject(t, c, bucket, key)
		if err != nil {
			t.Fatalf("GetObject(%s) error: %v", key, err)
		}
		objs[key] = o
		if _, ok := o.meta[MetaImageID]; ok {
			t.Errorf("%s: metadata %v; the manifest carries only the checksums, as IMS writes it", key, o.meta)
		}
		m, err := ims.ParseManifest(o.data)
		if err != nil {
			t.Fatalf("ParseManifest(%s) error: %v\n%s", key, err, o.data)
		}
		if m.Created != "2025-01-02 03:04:05" {
			t.Errorf("manifest created = %q, want %q", m.Created, "2025-01-02 03:04:05")
		}
		if len(m.Artifacts) != len(want) {
			t.Fatalf("manifest %s has %d artifacts, want %d:\n%s", key, len(m.Artifacts), len(want), o.data)
		}
		for i := range want {
			if m.Artifacts[i] != want[i] {
				t.Errorf("manifest %s artifact %d = %+v, want %+v", key, i, m.Artifacts[i], want[i])
			}
		}
	}
	return objs
}

func TestPublishRoundTripAndRepublish(t *testing.T) {
	for _, prefix := range []string{"", "site/a"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			srv := s3test.Start(t)
			srv.CreateBucket(t, DefaultBucket)
			store := newFileStore(t)
			images := testImages(t, store)
			var ct countingTransport
			cfg := testConfig(srv)
			cfg.Prefix = prefix
			cfg.HTTPClient = &http.Client{Transport: &ct}
			p := newPublisher(t, cfg)

			if err := p.Publish(ctx, store, images); err != nil {
				t.Fatalf("Publish() error: %v", err)
			}
			kp := p.cfg.Prefix
			first := checkPublished(t, srv.Client(t), DefaultBucket, kp, images)
			if o := first[kp+images[0].ID+"/rootfs"]; !strings.Contains(o.etag, "-") {
				t.Errorf("rootfs etag %q is not a multipart etag; the test wants a multipart upload", o.etag)
			}

			ct.reset()
			start := time.Now()
			if err := p.Publish(ctx, store, images); err != nil {
				t.Fatalf("Publish() again error: %v", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("republish took %v, want < 1s", d)
			}
			if n, m := ct.count(http.MethodPut), ct.count(http.MethodPost); n+m != 0 {
				t.Errorf("republish sent %d PUT and %d POST requests, want none", n, m)
			}
			second := checkPublished(t, srv.Client(t), DefaultBucket, kp, images)
			for key, o := range first {
				if !second[key].modified.Equal(o.modified) || second[key].etag != o.etag {
					t.Errorf("%s changed on republish", key)
				}
			}
		})
	}
}

// A blob whose md5 differs from the recorded one is not published, whether
// it goes in one PUT or in parts.
func TestPublishBadMD5(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	for i, img := range testImages(t, store) {
		rootfs := img.Outputs[ims.ArtifactRootfs]
		rootfs.MD5 = strings.Repeat("0", 32)
		img.Outputs[ims.ArtifactRootfs] = rootfs

		err := newPublisher(t, testConfig(srv)).Publish(ctx, store, []publish.Image{img})
		if !errors.Is(err, publish.ErrCorrupt) {
			t.Fatalf("Publish(image %d) error = %v, want ErrCorrupt", i, err)
		}
		if want := "put s3://boot-images/" + img.ID + "/rootfs"; !strings.Contains(err.Error(), want) {
			t.Errorf("Publish(image %d) error = %q, want it to contain %q", i, err, want)
		}
		c := srv.Client(t)
		headNotFound(t, c, DefaultBucket, img.ID+"/rootfs")
		headNotFound(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	}
}

// An output without an md5 gets one computed.
func TestPublishComputesMissingMD5(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	images := testImages(t, store)[1:]
	noMD5 := map[string]publish.Artifact{}
	for name, o := range images[0].Outputs {
		o.MD5 = ""
		noMD5[name] = o
	}
	p := newPublisher(t, testConfig(srv))
	img := images[0]
	img.Outputs = noMD5
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	checkPublished(t, srv.Client(t), DefaultBucket, "", images)
}

func TestPublishErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	images := testImages(t, store)
	down := s3test.Start(t)
	down.Stop()

	tests := []struct {
		name   string
		cfg    func(*Config)
		images []publish.Image
		is     error
		want   []string
	}{{
		name: "missing bucket",
		cfg:  func(c *Config) { c.Bucket = "no-such-bucket" },
		is:   ErrNoSuchBucket,
		want: []string{"head bucket s3://no-such-bucket", `bucket "no-such-bucket" does not exist`},
	}, {
		name: "wrong secret",
		cfg: func(c *Config) {
			c.Credentials = credentials.NewStaticCredentialsProvider(srv.AccessKey, "wrong", "")
		},
		is:   ErrAccessDenied,
		want: []string{"s3://boot-images", "check the credentials"},
	}, {
		name: "connection refused",
		cfg:  func(c *Config) { c.Endpoint = down.Endpoint; c.MaxAttempts = 2 },
		is:   ErrUnreachable,
		want: []string{"s3://boot-images", "connection refused by " + down.Endpoint},
	}, {
		name:   "no rootfs",
		images: []publish.Image{{Label: "x", ID: "id-x", Outputs: map[string]publish.Artifact{"kernel": images[0].Outputs["kernel"]}}},
		want:   []string{"publish s3 image x (id-x): no rootfs output"},
	}, {
		name:   "no id",
		images: []publish.Image{{Label: "x", Outputs: images[0].Outputs}},
		want:   []string{"publish s3 image x: no image id"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			imgs := tc.images
			if imgs == nil {
				imgs = images
			}
			err := newPublisher(t, cfg).Publish(ctx, store, imgs)
			if err == nil {
				t.Fatal("Publish() error = nil, want an error")
			}
			t.Logf("Publish() error: %v", err)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Publish() error = %v, want errors.Is %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Publish() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	// Nothing was written by the failed attempts.
	out, err := srv.Client(t).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(DefaultBucket)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 0 {
		t.Errorf("bucket has %d objects after failed publishes, want 0", len(out.Contents))
	}
}

func TestNewConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"small part", Config{Config: s3client.Config{PartSize: 1 << 20}}, "below the S3 minimum"},
		{"missing ca bundle", Config{Config: s3client.Config{CABundle: "/nonexistent/ca.pem"}}, "ca bundle"},
		{"ca bundle and client", Config{Config: s3client.Config{CABundle: "x.pem", HTTPClient: http.DefaultClient}}, "set TLS on the given HTTP client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestKeyAndLink(t *testing.T) {
	tests := []struct {
		prefix, key, link string
	}{
		{"", "id/rootfs", "s3://boot-images/id/rootfs"},
		{"a/b", "a/b/id/rootfs", "s3://boot-images/a/b/id/rootfs"},
		{"/a/", "a/id/rootfs", "s3://boot-images/a/id/rootfs"},
	}
	for _, tc := range tests {
		p := newPublisher(t, Config{Prefix: tc.prefix, Config: s3client.Config{Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}})
		if got := p.Key("id", "rootfs"); got != tc.key {
			t.Errorf("Key() with prefix %q = %q, want %q", tc.prefix, got, tc.key)
		}
		if got := p.Link("id", "rootfs"); got != tc.link {
			t.Errorf("Link() with prefix %q = %q, want %q", tc.prefix, got, tc.link)
		}
	}
}

// Republishing an image whose kernel changed uploads the kernel and the
// manifest only.
func TestPublishReplacesChangedArtifact(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	images := testImages(t, store)[:1]
	var ct countingTransport
	cfg := testConfig(srv)
	cfg.HTTPClient = &http.Client{Transport: &ct}
	p := newPublisher(t, cfg)
	if err := p.Publish(ctx, store, images); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	images[0].Outputs[ims.ArtifactKernel] = putBytes(t, store, []byte("new kernel\n"))
	ct.reset()
	if err := p.Publish(ctx, store, images); err != nil {
		t.Fatalf("Publish() again error: %v", err)
	}
	if n, m := ct.count(http.MethodPut), ct.count(http.MethodPost); n != 2 || m != 0 {
		t.Errorf("republish sent %d PUT and %d POST requests, want 2 PUT (kernel, manifest.json)", n, m)
	}
	checkPublished(t, srv.Client(t), DefaultBucket, "", images)
}

// An artifact published without the x-shasta-ims-* metadata (by imsbuild
// before it set them, or by a plain copy) gets them on the next publish.
func TestPublishAddsImageMetadata(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	images := testImages(t, store)[1:]
	p := newPublisher(t, testConfig(srv))
	if err := p.Publish(ctx, store, images); err != nil {
		t.Fatalf("Publish() error: %v", err)
	}
	c := srv.Client(t)
	key := p.Key(images[0].ID, ims.ArtifactKernel)
	out := images[0].Outputs[ims.ArtifactKernel]
	_, err := c.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(DefaultBucket), Key: aws.String(key), CopySource: aws.String(DefaultBucket + "/" + key),
		MetadataDirective: types.MetadataDirectiveReplace,
		Metadata:          map[string]string{MetaMD5: out.MD5, MetaSHA256: out.Digest.Encoded()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := getObject(t, c, DefaultBucket, key); o.meta[MetaImageID] != "" {
		t.Fatalf("metadata %v after the copy, want no %s", o.meta, MetaImageID)
	}
	if err := p.Publish(ctx, store, images); err != nil {
		t.Fatalf("Publish() again error: %v", err)
	}
	checkPublished(t, c, DefaultBucket, "", images)
}
