package cachetest

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// HeadBarrier is the HTTP transport of a remote backend under
// ParallelGet. Once armed, it holds each HEAD until two are in flight (or a
// timeout passes), so a serial existence check shows as at most one HEAD
// at once. Other requests pass through http.DefaultTransport.
type HeadBarrier struct {
	mu          sync.Mutex
	armed       bool // count and hold HEADs only when set
	inFlight    int
	maxInFlight int
	heads       int
	two         chan struct{}
	once        sync.Once
}

// NewHeadBarrier returns an unarmed HeadBarrier.
func NewHeadBarrier() *HeadBarrier { return &HeadBarrier{two: make(chan struct{})} }

// RoundTrip implements http.RoundTripper.
func (b *HeadBarrier) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	if r.Method != http.MethodHead || !b.armed {
		b.mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	}
	b.inFlight++
	b.heads++
	b.maxInFlight = max(b.maxInFlight, b.inFlight)
	if b.inFlight >= 2 {
		b.once.Do(func() { close(b.two) })
	}
	b.mu.Unlock()
	select {
	case <-b.two:
	case <-time.After(3 * time.Second):
	case <-r.Context().Done():
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	b.mu.Lock()
	b.inFlight--
	b.mu.Unlock()
	return resp, err
}

// ParallelGet checks that ActionCache.Get of a remote backend checks the
// blobs of a result in parallel: s and ac must send their requests through
// b. It stores six outputs and their action, arms b, and wants Get to send
// six HEADs, at least two at once.
func ParallelGet(t *testing.T, s cache.Store, ac cache.ActionCache, b *HeadBarrier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	res := &cache.ActionResult{Step: "s", Builder: "b", Outputs: map[string]cache.Output{}, Created: time.Unix(1, 0).UTC()}
	for i := range 6 {
		d, n, err := s.Put(ctx, strings.NewReader(fmt.Sprint("output ", i)), "")
		if err != nil {
			t.Fatal(err)
		}
		res.Outputs[fmt.Sprint("out", i)] = cache.Output{Digest: d, Size: n}
	}
	key := strings.Repeat("c", 64)
	if err := ac.Put(ctx, key, []byte(`{}`), res); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.armed = true
	b.mu.Unlock()
	if _, err := ac.Get(ctx, key); err != nil {
		t.Fatalf("Get() = %v", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.heads != 6 || b.maxInFlight < 2 {
		t.Errorf("Get() sent %d HEADs, at most %d at once; want 6, in parallel", b.heads, b.maxInFlight)
	}
}
