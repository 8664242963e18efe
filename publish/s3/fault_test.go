package s3

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish"
)

// signalReader closes reached once n bytes were read.
type signalReader struct {
	r       io.Reader
	n       int64
	once    *sync.Once
	reached chan struct{}
}

func (s *signalReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	s.n -= int64(n)
	if s.n <= 0 {
		s.once.Do(func() { close(s.reached) })
	}
	return n, err
}

// The server goes away in the middle of a multipart upload: Publish fails,
// no manifest (and no partial rootfs) is visible, and a Publish after the
// server is back completes.
func TestPublishServerStopsMidUpload(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := publish.Image{
		Label: "big", ID: "abcdef00-0000-0000-0000-000000000064",
		Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: putBlob(t, store, 64, 64<<20),
			ims.ArtifactKernel: putBytes(t, store, []byte("fake kernel\n")),
		},
	}
	reached := make(chan struct{})
	var once sync.Once
	store.OnOpen = func(r io.Reader) io.Reader {
		return &signalReader{r: r, n: 20 << 20, once: &once, reached: reached}
	}
	cfg := testConfig(srv) // 5 MiB parts, 2 at a time, 5 attempts 100ms apart at most
	p := newPublisher(t, cfg)

	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, store, []publish.Image{img}) }()
	select {
	case <-reached:
	case err := <-done:
		t.Fatalf("Publish() returned %v before 20 MiB were read", err)
	case <-ctx.Done():
		t.Fatal("timeout waiting for the upload to reach 20 MiB")
	}
	srv.Stop()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		t.Fatal("Publish() did not return after the server stopped")
	}
	if err == nil {
		t.Fatal("Publish() error = nil with the server stopped mid-upload")
	}
	if want := "put s3://boot-images/" + img.ID + "/rootfs"; !strings.Contains(err.Error(), want) {
		t.Errorf("Publish() error = %q, want it to contain %q", err, want)
	}
	t.Logf("Publish() with the server stopped: %v", err)

	srv.Restart()
	c := srv.Client(t)
	headNotFound(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	headNotFound(t, c, DefaultBucket, img.ID+"/"+ims.ArtifactRootfs)

	store.OnOpen = nil
	if err := p.Publish(ctx, store, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() after restart error: %v", err)
	}
	checkPublished(t, c, DefaultBucket, "", []publish.Image{img})

	// The failed multipart upload was aborted (or completed later by nobody).
	mp, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(DefaultBucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads() error: %v", err)
	}
	if len(mp.Uploads) != 0 {
		t.Logf("%d multipart uploads left after the outage (the server was down for the abort)", len(mp.Uploads))
	}
}

// Cancelling Publish mid-upload returns the context's error and leaves no
// manifest.
func TestPublishCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, DefaultBucket)
	store := newFileStore(t)
	img := publish.Image{
		Label: "big", ID: "abcdef00-0000-0000-0000-000000000032",
		Outputs: map[string]publish.Artifact{ims.ArtifactRootfs: putBlob(t, store, 32, 32<<20)},
	}
	reached := make(chan struct{})
	var once sync.Once
	store.OnOpen = func(r io.Reader) io.Reader {
		return &signalReader{r: r, n: 12 << 20, once: &once, reached: reached}
	}
	pubCtx, pubCancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- newPublisher(t, testConfig(srv)).Publish(pubCtx, store, []publish.Image{img}) }()
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("timeout waiting for the upload to reach 12 MiB")
	}
	pubCancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Publish() cancelled error = %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("Publish() did not return after cancel")
	}
	c := srv.Client(t)
	headNotFound(t, c, DefaultBucket, img.ID+"/"+ims.ManifestFile)
	headNotFound(t, c, DefaultBucket, img.ID+"/"+ims.ArtifactRootfs)
}
