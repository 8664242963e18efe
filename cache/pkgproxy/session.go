package pkgproxy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/imsbuild/imsbuild/cache"
)

// Hooks watch and restrict the package requests of one Session.
type Hooks struct {
	// Served, when set, is called with the canonical URL, the digest and
	// the size of each package file the session served whole, from the
	// cache or from upstream.
	Served func(url string, d cache.Digest, size int64)
	// Check, when set, is asked whether a package may be served: first
	// with its canonical URL alone (d is ""), then with its digest once
	// known. An error refuses the package: before the body, the answer is
	// 403 with the error's text; once the body started (a download from
	// upstream is checked at its end) the connection is aborted before
	// the last byte, so the client never has the package. A checked
	// package is always sent whole: Range and conditional headers are
	// dropped.
	Check func(url string, d cache.Digest) error
}

func (h *Hooks) checks() bool { return h != nil && h.Check != nil }

func (h *Hooks) served(url string, d cache.Digest, size int64) {
	if h != nil && h.Served != nil {
		h.Served(url, d, size)
	}
}

// refuse answers a package request that the session's Check refused.
func refuse(w http.ResponseWriter, err error) {
	http.Error(w, "pkgproxy: "+err.Error(), http.StatusForbidden)
}

// Session is the proxy on a port of its own, whose package requests go
// through hooks: one client's view of the shared cache (a kiwi prepare
// whose downloads are recorded, or checked against a lock), while the
// store, the index and the counts stay the proxy's.
type Session struct {
	p      *Proxy
	hooks  Hooks
	url    string
	srv    *http.Server
	served chan struct{}
}

// Session starts a session on a free port of 127.0.0.1. It serves until
// its Close or the proxy's.
func (p *Proxy) Session(hooks Hooks) (*Session, error) {
	s := &Session{p: p, hooks: hooks, served: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("pkgproxy session: proxy closed")
	}
	var err error
	s.srv, s.url, err = p.listen(func(w http.ResponseWriter, r *http.Request) { p.serveWith(w, r, &s.hooks) }, s.served)
	if err != nil {
		return nil, fmt.Errorf("pkgproxy session: %w", err)
	}
	p.sessions[s] = true
	return s, nil
}

// URL returns the session's address, "http://127.0.0.1:<port>", for
// http_proxy.
func (s *Session) URL() string { return s.url }

// Close stops the session: it stops listening and aborts its requests in
// flight, which its client no longer makes once it is done. It may be
// called more than once, and after the proxy's Close.
func (s *Session) Close() error {
	s.p.mu.Lock()
	open := s.p.sessions[s]
	delete(s.p.sessions, s)
	s.p.mu.Unlock()
	if !open {
		return nil
	}
	err := s.srv.Close()
	<-s.served
	if err != nil {
		return fmt.Errorf("close pkgproxy session: %w", err)
	}
	return nil
}
