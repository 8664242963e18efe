package oci_test

import (
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

	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
	"github.com/imsbuild/imsbuild/publish/publishtest"
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

func newStore(t *testing.T) *publishtest.Blobs { return publishtest.New(t) }

// testImage stores the artifacts and returns an image of them.
func testImage(t *testing.T, store *publishtest.Blobs, arts map[string][]byte) publish.Image {
	t.Helper()
	img := publish.Image{
		Label:   "compute",
		Name:    "compute-bookworm",
		Arch:    "x86_64",
		ID:      "3fa85f64-5717-4562-b3fc-2c963f66afa6",
		Key:     strings.Repeat("ab", 32),
		Created: created,
		Outputs: map[string]publish.Artifact{},
	}
	for n, data := range arts {
		img.Outputs[n] = store.Add(t, n, data)
	}
	return img
}

// push publishes img with a publisher of cfg and opts and returns the
// reference PushImage returns (repository@digest).
func push(t *testing.T, store *publishtest.Blobs, img publish.Image, cfg oci.Config, opts ...oci.Option) string {
	t.Helper()
	p, err := oci.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := p.PushImage(t.Context(), store, img)
	if err != nil {
		t.Fatalf("PushImage() = %v", err)
	}
	return ref
}

// cosignTag is the tag under which cosign keeps the attachments of kind
// ("sig", "att") of ref (repository@sha256:<hex>): sha256-<hex>.<kind>.
func cosignTag(ref, kind string) string {
	return strings.Replace(ref[strings.LastIndex(ref, "@")+1:], ":", "-", 1) + "." + kind
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
