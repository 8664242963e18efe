package oci

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/cache"
)

// schemeRecorder fails every request and records its scheme and host, so a
// cache can "be" at a private address without traffic leaving the test.
type schemeRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *schemeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.URL.Scheme+"://"+req.URL.Host)
	r.mu.Unlock()
	return nil, errors.New("no registry here")
}

// A remote cache at a private address gets no plain HTTP unless insecure:
// ggcr's scheme choice made the cache talk plain HTTP to 10.x registries.
func TestCachePlainHTTPOnlyWhenInsecure(t *testing.T) {
	d := cache.Digest("sha256:" + strings.Repeat("a", 64))
	for _, tc := range []struct {
		url      string
		insecure bool
		want     string // the scheme every request must have
	}{
		{"oci://10.1.2.3:5000/ci/cache", false, "https"},
		{"oci://192.168.7.8/ci/cache", false, "https"},
		{"oci://reg.localhost:5000/ci/cache", false, "https"},
		{"oci://10.1.2.3:5000/ci/cache", true, "http"},
	} {
		rec := &schemeRecorder{}
		c, err := Open(t.Context(), tc.url, Options{Transport: rec, Insecure: tc.insecure})
		if err != nil {
			t.Fatalf("Open(%s) = %v", tc.url, err)
		}
		_, _ = c.Stat(t.Context(), d)
		_, _ = c.Actions().Get(t.Context(), strings.Repeat("b", 64))
		rec.mu.Lock()
		seen := rec.seen
		rec.mu.Unlock()
		if len(seen) == 0 {
			t.Fatalf("%s: no request was made", tc.url)
		}
		for _, s := range seen {
			if tc.want == "https" && !strings.HasPrefix(s, "https://") {
				t.Errorf("%s (insecure=%t): request to %s, want HTTPS only", tc.url, tc.insecure, s)
			}
		}
		if tc.want == "http" && !strings.HasPrefix(seen[len(seen)-1], "http://") {
			t.Errorf("%s (insecure=%t): requests %v, want plain HTTP allowed", tc.url, tc.insecure, seen)
		}
	}
}
