package servertest

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims/server"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

// Server is a running IMS API.
type Server struct {
	URL   string         // http://127.0.0.1:<port>, the API root (/v3/…, /images, …)
	S3    *s3test.Server // its S3, with buckets boot-images and ims
	Store *store.Store   // its records
}

// Start starts a server and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "boot-images")
	s3s.CreateBucket(t, "ims")
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(s3s.Endpoint), Region: s3s.Region, UsePathStyle: true,
		Credentials: s3s.Client(t).Options().Credentials,
	})
	srv, err := server.New(server.Config{Store: st, Blobs: blob.New(client), Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &Server{URL: ts.URL, S3: s3s, Store: st}
}
