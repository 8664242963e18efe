package server

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

// env is a server on httptest with its store and a real S3 (versitygw).
type env struct {
	t     testing.TB
	url   string
	srv   *Server
	st    *store.Store
	s3    *s3test.Server
	blobs *blob.Store
	dir   string
	// do sends each request; the contract test replaces it with one that
	// validates against the OpenAPI file.
	do func(req *http.Request) *http.Response
}

func newEnv(t testing.TB, opts ...func(*Config)) *env {
	t.Helper()
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "boot-images")
	s3s.CreateBucket(t, "ims")
	return newEnvWithS3(t, s3s, opts...)
}

func newEnvWithS3(t testing.TB, s3s *s3test.Server, opts ...func(*Config)) *env {
	t.Helper()
	return newEnvAt(t, s3s, t.TempDir(), opts...)
}

// newEnvAt serves the data directory dir.
func newEnvAt(t testing.TB, s3s *s3test.Server, dir string, opts ...func(*Config)) *env {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(s3s.Endpoint), Region: s3s.Region, UsePathStyle: true,
		Credentials: s3s.Client(t).Options().Credentials, Retryer: aws.NopRetryer{},
	})
	blobs := blob.New(client)
	cfg := Config{Store: st, Blobs: blobs, Version: "test", Logger: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e := &env{t: t, url: ts.URL, srv: srv, st: st, s3: s3s, blobs: blobs, dir: dir}
	e.do = func(req *http.Request) *http.Response {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	return e
}

// call sends a request (body JSON unless it is a string sent as is) and
// returns the status and body.
func (e *env) call(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp := e.do(req)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, data
}

// must calls and fails the test unless the status is want; it decodes the
// body into a map (or returns nil for an empty body).
func (e *env) must(want int, method, path string, body any) map[string]any {
	e.t.Helper()
	got, data := e.call(method, path, body)
	if got != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, got, data, want)
	}
	if len(data) == 0 || data[0] != '{' {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		e.t.Fatalf("%s %s: body %s: %v", method, path, data, err)
	}
	return m
}

func (e *env) putObject(bucket, key string, data []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.blobs.Put(ctx, bucket, key, data, "application/octet-stream"); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) exists(bucket, key string) bool {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := e.blobs.Head(ctx, bucket, key)
	return err == nil
}

// putImageArtifacts uploads a rootfs, kernel, initrd and a manifest
// listing them under boot-images/<prefix>/ and returns the manifest link.
func (e *env) putImageArtifacts(prefix string) map[string]any {
	e.t.Helper()
	type art struct{ name, typ string }
	var arts []map[string]any
	for _, a := range []art{{"rootfs", mediaRootfs}, {"kernel", "application/vnd.cray.image.kernel"}, {"initrd", "application/vnd.cray.image.initrd"}} {
		data := []byte(a.name + " of " + prefix)
		e.putObject("boot-images", prefix+"/"+a.name, data)
		sum := md5.Sum(data)
		arts = append(arts, map[string]any{
			"link": map[string]any{"path": "s3://boot-images/" + prefix + "/" + a.name, "etag": hex.EncodeToString(sum[:]), "type": "s3"},
			"md5":  hex.EncodeToString(sum[:]), "type": a.typ,
		})
	}
	m, _ := json.MarshalIndent(map[string]any{"version": "1.0", "created": "2025-01-02 03:04:05", "artifacts": arts}, "", "    ")
	e.putObject("boot-images", prefix+"/manifest.json", m)
	return map[string]any{"path": "s3://boot-images/" + prefix + "/manifest.json", "etag": "", "type": "s3"}
}

func decodeList(t testing.TB, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("list %s: %v", data, err)
	}
	return out
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func readFile(dir, name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }

// imageRecord is a synthetic image record for filling a store.
func imageRecord(i int) store.Image {
	return store.Image{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Created: "2026-11-25T04:22:46.783381",
		Name: fmt.Sprintf("image-%d", i), Arch: "x86_64", Metadata: map[string]string{"site": "x"},
		Link: &store.Link{Path: fmt.Sprintf("s3://boot-images/%012d/manifest.json", i), Etag: "0123456789abcdef0123456789abcdef", Type: "s3"},
	}
}
