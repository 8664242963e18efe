package oci_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

// created is the fixed build time of test images.
var created = time.Date(2024, 5, 1, 12, 30, 0, 0, time.UTC)

// newRegistry starts ggcr's in-process registry and returns its host.
func newRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func newStore(t *testing.T) *local.Cache {
	t.Helper()
	c, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// put stores data and returns its output (with md5, as pack records it).
func put(t *testing.T, store cache.Store, name string, data []byte) cache.Output {
	t.Helper()
	d, n, err := store.Put(t.Context(), bytes.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(data)
	return cache.Output{Digest: d, Size: n, MediaType: ims.MediaTypeOf(name), MD5: hex.EncodeToString(sum[:])}
}

// testImage stores the artifacts and returns an image of them.
func testImage(t *testing.T, store cache.Store, arts map[string][]byte) publish.Image {
	t.Helper()
	img := publish.Image{
		Label:   "compute",
		Name:    "compute-bookworm",
		Arch:    "x86_64",
		ID:      "3fa85f64-5717-4562-b3fc-2c963f66afa6",
		Key:     strings.Repeat("ab", 32),
		Created: created,
		Outputs: map[string]cache.Output{},
	}
	for n, data := range arts {
		img.Outputs[n] = put(t, store, n, data)
	}
	return img
}

// counter counts registry requests by kind; safe for concurrent use.
type counter struct {
	rt http.RoundTripper
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{rt: http.DefaultTransport, n: map[string]int{}} }

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	kind := req.Method + " other"
	switch p := req.URL.Path; {
	case strings.Contains(p, "/blobs/uploads/"):
		kind = req.Method + " upload"
	case strings.Contains(p, "/blobs/"):
		kind = req.Method + " blob"
	case strings.Contains(p, "/manifests/"):
		kind = req.Method + " manifest"
	}
	c.mu.Lock()
	c.n[kind]++
	c.mu.Unlock()
	return c.rt.RoundTrip(req)
}

func (c *counter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

func (c *counter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.n)
}

// closedHost returns a loopback host:port nothing listens on.
func closedHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	return host
}
