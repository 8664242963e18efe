package builderimage

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// schemeRecorder fails every request and records its scheme and host, so a
// registry can "be" at a private address without traffic leaving the test.
type schemeRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *schemeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, req.URL.Scheme+"://"+req.URL.Host)
	return nil, errors.New("no registry here")
}

// A builder image at a private address is pulled over HTTPS only unless
// insecure: ggcr alone falls back to plain HTTP for 10.x and *.localhost.
func TestResolvePlainHTTPOnlyWhenInsecure(t *testing.T) {
	for _, tc := range []struct {
		ref      string
		insecure bool
		plain    bool // plain HTTP must be allowed
	}{
		{"10.1.2.3:5000/kiwi-builder:9", false, false},
		{"reg.localhost:5000/kiwi-builder:9", false, false},
		{"10.1.2.3:5000/kiwi-builder:9", true, true},
	} {
		rec := &schemeRecorder{}
		if _, err := Resolve(t.Context(), tc.ref, Options{Transport: rec, Insecure: tc.insecure}); err == nil {
			t.Fatalf("Resolve(%s) = nil error, want one (nothing answers)", tc.ref)
		}
		rec.mu.Lock()
		seen := strings.Join(rec.seen, " ")
		rec.mu.Unlock()
		if seen == "" {
			t.Fatalf("Resolve(%s): no request was made", tc.ref)
		}
		if got := strings.Contains(seen, "http://"); got != tc.plain {
			t.Errorf("Resolve(%s, insecure=%t): requests %s; plain HTTP used = %t, want %t", tc.ref, tc.insecure, seen, got, tc.plain)
		}
	}
}
