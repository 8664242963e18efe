package oci_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
)

// inProcess serves every request with an in-process registry, whatever
// host it names, and records each request's scheme and host: no traffic
// leaves the test, so a registry can "be" at a private address. A plain
// registry fails HTTPS requests the way an HTTP server answering a TLS
// handshake does.
type inProcess struct {
	h     http.Handler
	plain bool
	mu    sync.Mutex
	seen  []string
}

func (t *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.seen = append(t.seen, req.URL.Scheme+"://"+req.URL.Host)
	t.mu.Unlock()
	if t.plain && req.URL.Scheme == "https" {
		return nil, errors.New("http: server gave HTTP response to HTTPS client")
	}
	srvReq := req.Clone(req.Context())
	if srvReq.Body == nil { // a server request always has a body
		srvReq.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, srvReq)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (t *inProcess) schemes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := slices.Clone(t.seen)
	slices.Sort(out)
	return slices.Compact(out)
}

// A registry at a private address gets no plain HTTP unless insecure =
// true; ggcr alone fell back to plain HTTP silently when HTTPS failed.
// Loopback may use plain HTTP.
func TestPublishPlainHTTPOnlyWhenInsecure(t *testing.T) {
	store := newStore(t)
	img := testImage(t, store, map[string][]byte{"rootfs": []byte("root")})
	for _, tc := range []struct {
		name     string
		registry string
		plain    bool // the registry speaks plain HTTP only
		insecure bool
		wantErr  string
		want     []string // schemes and hosts requested
	}{
		{"plain registry at a private address", "10.1.2.3:5000", true, false,
			"a registry without TLS needs insecure = true", []string{"https://10.1.2.3:5000"}},
		{"plain registry, insecure", "192.168.7.8:5000", true, true,
			"", []string{"http://192.168.7.8:5000", "https://192.168.7.8:5000"}},
		{"TLS registry at a private address", "172.16.0.9:5000", false, false,
			"", []string{"https://172.16.0.9:5000"}},
		{"plain registry at a localhost name", "reg.localhost:5000", true, false,
			"a registry without TLS needs insecure = true", []string{"https://reg.localhost:5000"}},
		{"plain registry on loopback", "127.0.0.1:5000", true, false,
			"", []string{"http://127.0.0.1:5000", "https://127.0.0.1:5000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &inProcess{h: registry.New(registry.Logger(log.New(io.Discard, "", 0))), plain: tc.plain}
			p, err := oci.New(oci.Config{Repository: tc.registry + "/hpc/img", Insecure: tc.insecure},
				oci.WithTransport(rt), oci.WithKeychain(authn.NewMultiKeychain()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			err = p.Publish(ctx, store, []publish.Image{img})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Publish() = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Publish() = %v, want an error containing %q", err, tc.wantErr)
			}
			if got := rt.schemes(); !slices.Equal(got, tc.want) {
				t.Errorf("requests went to %v, want %v", got, tc.want)
			}
		})
	}
}
