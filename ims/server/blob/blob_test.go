package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/internal/s3test"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "bkt")
	return New(srv.Client(t))
}

// TestMoveMultipart moves an object above the copy threshold in parts (the
// path soft delete takes above 5 GiB) and one below in one copy; content
// and metadata arrive, the source is gone.
func TestMoveMultipart(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	s.CopyThreshold, s.CopyPartSize = 5<<20, 5<<20
	for _, size := range []int{11 << 20, 1000} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bkt"), Key: aws.String("img/rootfs"), Body: bytes.NewReader(data),
			Metadata: map[string]string{"md5sum": "abc"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Move(ctx, "bkt", "img/rootfs", "deleted/img/rootfs"); err != nil {
			t.Fatalf("move %d bytes: %v", size, err)
		}
		if _, err := s.Head(ctx, "bkt", "img/rootfs"); !errors.Is(err, ErrNotFound) {
			t.Errorf("source after move: %v, want ErrNotFound", err)
		}
		got, err := s.Read(ctx, "bkt", "deleted/img/rootfs", 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("moved %d bytes: content differs (%d bytes)", size, len(got))
		}
		info, err := s.Head(ctx, "bkt", "deleted/img/rootfs")
		if err != nil {
			t.Fatal(err)
		}
		if info.Metadata["md5sum"] != "abc" {
			t.Errorf("moved %d bytes: metadata %v, want md5sum abc", size, info.Metadata)
		}
		if size > 5<<20 && !bytes.Contains([]byte(info.ETag), []byte("-")) {
			t.Errorf("moved %d bytes: ETag %q is no multipart ETag: not copied in parts", size, info.ETag)
		}
	}
}

func TestReadLimit(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if err := s.Put(ctx, "bkt", "m", make([]byte, 100), "application/json"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(ctx, "bkt", "m", 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read at the limit: %v, want ErrTooLarge", err)
	}
	if _, err := s.Read(ctx, "bkt", "m", 101); err != nil {
		t.Errorf("Read under the limit: %v", err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, bucket, key string
		ok              bool
	}{
		{"s3://boot-images/id/manifest.json", "boot-images", "id/manifest.json", true},
		{"s3://b/", "", "", false},
		{"http://b/k", "", "", false},
		{"s3:///k", "", "", false},
		{"s3://b/k?x=1", "", "", false},
	}
	for _, tc := range tests {
		b, k, err := ParseURL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || k != tc.key {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q, ok %v", tc.in, b, k, err, tc.bucket, tc.key, tc.ok)
		}
	}
}

// TestEmbedded starts the embedded gateway twice on one directory: the
// credentials are generated once, kept 0600, and reused.
func TestEmbedded(t *testing.T) {
	if _, err := LookGateway(); err != nil {
		s3test.Start(t) // skips, or fails under IMSBUILD_TEST_REQUIRE, as other S3 tests do
	}
	dir := t.TempDir()
	ctx := context.Background()
	e, err := StartEmbedded(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientFor(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	s := New(client)
	if err := s.EnsureBucket(ctx, "boot-images"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(ctx, "boot-images"); err != nil {
		t.Fatalf("EnsureBucket of an existing bucket: %v", err)
	}
	if err := s.Put(ctx, "boot-images", "k", []byte("v"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	creds := e.Credentials
	e.Stop()
	fi, err := statMode(e.CredentialsFile)
	if err != nil || fi != 0o600 {
		t.Errorf("credentials file mode %o (%v), want 600", fi, err)
	}
	e2, err := StartEmbedded(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Stop()
	if e2.Credentials != creds {
		t.Errorf("credentials changed across restarts")
	}
	client2, _ := clientFor(ctx, e2)
	if got, err := New(client2).Read(ctx, "boot-images", "k", 10); err != nil || string(got) != "v" {
		t.Errorf("object after restart = %q, %v", got, err)
	}
}
