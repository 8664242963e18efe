package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"
)

// shutdownTimeout bounds how long Close waits for requests in flight.
const shutdownTimeout = 5 * time.Second

// Faults says which requests fail and how. Requests are numbered from 1 in
// the order the proxy receives them (only those Only matches, when set); a
// request that several faults would hit gets the first of drop, 500.
type Faults struct {
	// DropEvery > 0 closes the connection of every Nth request without a
	// response (a TCP reset).
	DropEvery int
	// Status500Every > 0 answers every Nth request 500 Internal Server Error
	// without forwarding it; 1 fails every request.
	Status500Every int
	// DelayPerRequest delays every request before it is forwarded.
	DelayPerRequest time.Duration
	// ResetAfterBytes > 0 resets the connection of the first request whose
	// body is longer than N bytes, after the proxy has read N bytes of it.
	// It happens once.
	ResetAfterBytes int64
	// Only, when not nil, limits faults (and their counting) to the
	// requests it matches; others pass untouched.
	Only func(r *http.Request) bool
}

// Stats counts what the proxy saw and did.
type Stats struct {
	Requests  int // requests received
	Forwarded int // requests no drop, 500 or reset hit (passed on after any delay)
	Dropped   int // connections closed without a response
	Status500 int // injected 500 responses
	Delayed   int // requests delayed
	Resets    int // connections reset mid-body
}

// Injected returns the number of injected failures (drops, 500s, resets).
func (s Stats) Injected() int { return s.Dropped + s.Status500 + s.Resets }

// Proxy is a running fault-injecting reverse proxy.
type Proxy struct {
	// Addr is "127.0.0.1:<port>" the proxy listens on.
	Addr string

	target *url.URL
	srv    *http.Server
	rp     *httputil.ReverseProxy
	tr     *http.Transport

	mu      sync.Mutex
	faults  Faults
	counted int  // requests matching Faults.Only
	reset   bool // ResetAfterBytes already used
	stats   Stats
}

// Start runs a proxy to target ("host:port", plain HTTP) on a free loopback
// port and stops it at t.Cleanup.
func Start(t testing.TB, target string, f Faults) *Proxy {
	t.Helper()
	p, err := New(target, f)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New runs a proxy to target ("host:port") on a free loopback port; Close
// stops it.
func New(target string, f Faults) (*Proxy, error) {
	u, err := url.Parse("http://" + target)
	if err != nil || u.Host != target {
		return nil, errors.New("target " + target + " is not host:port")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		Addr:   l.Addr().String(),
		target: u,
		faults: f,
		tr: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.target)
			// Keep the Host the client used: S3 signs it, and registries
			// build upload URLs from it, which keeps them on the proxy.
			pr.Out.Host = pr.In.Host
		},
		Transport:     p.tr,
		FlushInterval: -1,
		ErrorLog:      nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "faultproxy: "+err.Error()+"\n")
		},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// URL returns "http://" + Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// SetFaults replaces the faults from the next request on; the counters
// start again from zero.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults, p.counted, p.reset = f, 0, false
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops the proxy, waiting a little for requests in flight.
func (p *Proxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	p.tr.CloseIdleConnections()
}

// action is what the proxy does with one request.
type action int

const (
	forward action = iota
	drop
	fail500
	resetBody
)

// decide counts r and picks its fault.
func (p *Proxy) decide(r *http.Request) (action, time.Duration, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	f := p.faults
	if f.Only != nil && !f.Only(r) {
		p.stats.Forwarded++
		return forward, 0, 0
	}
	p.counted++
	n := p.counted
	delay := f.DelayPerRequest
	if delay > 0 {
		p.stats.Delayed++
	}
	switch {
	case f.DropEvery > 0 && n%f.DropEvery == 0:
		p.stats.Dropped++
		return drop, delay, 0
	case f.Status500Every > 0 && n%f.Status500Every == 0:
		p.stats.Status500++
		return fail500, delay, 0
	case f.ResetAfterBytes > 0 && !p.reset && (r.ContentLength > f.ResetAfterBytes || r.ContentLength < 0 && r.Body != http.NoBody):
		p.reset = true
		p.stats.Resets++
		return resetBody, delay, f.ResetAfterBytes
	}
	p.stats.Forwarded++
	return forward, delay, 0
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	act, delay, n := p.decide(r)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch act {
	case drop:
		abort(w)
	case fail500:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "faultproxy: injected 500\n")
	case resetBody:
		// Read n bytes as the server would, then cut the connection.
		_, _ = io.CopyN(io.Discard, r.Body, n)
		abort(w)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// abort resets the client's connection without a response.
func abort(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // RST instead of FIN
	}
	_ = conn.Close()
}
