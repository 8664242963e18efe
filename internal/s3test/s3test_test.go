package s3test

import (
	"context"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestServerRoundTripStopRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	srv := Start(t)
	srv.CreateBucket(t, "bkt")
	c := srv.Client(t)
	put := func(key, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("bkt"), Key: aws.String(key), Body: strings.NewReader(body),
			Metadata: map[string]string{"md5sum": "x"},
		})
		return err
	}
	get := func(key string) string {
		t.Helper()
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("GetObject(%s) error: %v", key, err)
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err != nil {
			t.Fatal(err)
		}
		if out.Metadata["md5sum"] != "x" {
			t.Errorf("GetObject(%s) metadata = %v, want md5sum=x", key, out.Metadata)
		}
		return string(b)
	}
	if err := put("a/one", "hello"); err != nil {
		t.Fatalf("PutObject() error: %v", err)
	}
	if got := get("a/one"); got != "hello" {
		t.Errorf("GetObject() = %q, want %q", got, "hello")
	}

	port := srv.Port()
	srv.Stop()
	if err := put("a/two", "x"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PutObject() on a stopped server error = %v, want connection refused", err)
	}
	srv.Restart()
	if srv.Port() != port {
		t.Errorf("Restart() port = %d, want %d", srv.Port(), port)
	}
	if got := get("a/one"); got != "hello" {
		t.Errorf("GetObject() after restart = %q, want %q", got, "hello")
	}
}
