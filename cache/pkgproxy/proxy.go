package pkgproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// Step is the Step (and Builder) of the proxy's action cache entries, so
// listings can tell downloaded packages from build steps.
const Step = "pkgproxy"

const (
	// keyType versions the preimage of index keys.
	keyType = "imsbuild/pkgproxy/v1"
	// output names the package blob in an index entry.
	output = "package"
	// mediaType is the Content-Type of packages served from the cache.
	mediaType = "application/octet-stream"

	// closeGrace bounds how long Close waits for requests in flight.
	closeGrace = 10 * time.Second
	// dialTimeout bounds the dial of a CONNECT tunnel.
	dialTimeout = 30 * time.Second
)

// packageExts are the file name endings of immutable package files.
var packageExts = []string{".deb", ".udeb", ".rpm", ".drpm"}

// hopHeaders are removed from requests and responses, as by
// net/http/httputil.ReverseProxy (besides those named in Connection).
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// conditionalHeaders make a package request pass through on a miss: their
// answer may not be the whole package.
var conditionalHeaders = []string{
	"Range",
	"If-Range",
	"If-Match",
	"If-None-Match",
	"If-Modified-Since",
	"If-Unmodified-Since",
}

// Options configure a Proxy. Store and Actions are required.
type Options struct {
	// Store keeps the package files (blobs).
	Store cache.Store
	// Actions maps a package URL to its blob (see the package doc).
	Actions cache.ActionCache
	// Client fetches from upstream. Nil uses a client of its own that
	// honours http_proxy/no_proxy of the environment. Redirects are never
	// followed and cookies never kept, whatever Client says; Close closes
	// its idle connections.
	Client *http.Client
	// Logger gets a debug line per request and warnings for cache
	// errors; nil discards.
	Logger *slog.Logger

	grace time.Duration // Close's wait for requests in flight; 0 is closeGrace (tests shorten it)
}

// Stats counts what a Proxy did.
type Stats struct {
	Hits        int64 // package requests answered from the cache (GET and HEAD)
	Misses      int64 // package requests sent upstream
	Stored      int64 // packages added to the cache
	PassThrough int64 // other requests, CONNECT tunnels included

	BytesFromCache    int64 // body bytes served from the cache
	BytesFromUpstream int64 // body (and tunnel) bytes received from upstream
}

// Proxy is a running caching forward proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	store   cache.Store
	actions cache.ActionCache
	client  *http.Client
	log     *slog.Logger
	grace   time.Duration

	url    string
	srv    *http.Server
	served chan struct{} // closed when Serve returned
	// life is the proxy's lifetime, ended by abort: the parent of request
	// contexts, and what bounds storing a package whose client left.
	life    context.Context
	abort   context.CancelFunc
	quit    chan struct{} // closed by Close: ends CONNECT tunnels
	unwatch func() bool   // stops the watch of Start's context

	mu       sync.Mutex
	closed   bool
	sessions map[*Session]bool // open sessions, closed with the proxy
	active   int               // handlers running
	wg       sync.WaitGroup    // handlers running, and the stores they left
	// prefetches are the Prefetch calls running, which Close aborts.
	prefetches sync.WaitGroup
	bad        map[string]bool // keys whose blob proved corrupt: fetched again
	// prefetching holds the keys Prefetch is downloading, each with a
	// channel closed when it is done.
	prefetching map[string]chan struct{}

	closeOnce sync.Once
	closeErr  error

	hits, misses, stored, pass atomic.Int64
	fromCache, fromUpstream    atomic.Int64
}

// Start starts a proxy on a free port of 127.0.0.1. It serves until Close,
// or until ctx is done, which aborts requests in flight.
func Start(ctx context.Context, opts Options) (*Proxy, error) {
	if opts.Store == nil || opts.Actions == nil {
		return nil, errors.New("start pkgproxy: Store and Actions are required")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start pkgproxy: %w", err)
	}
	p := &Proxy{
		store:       opts.Store,
		actions:     opts.Actions,
		log:         opts.Logger,
		grace:       opts.grace,
		served:      make(chan struct{}),
		quit:        make(chan struct{}),
		bad:         make(map[string]bool),
		prefetching: make(map[string]chan struct{}),
		sessions:    make(map[*Session]bool),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.grace <= 0 {
		p.grace = closeGrace
	}
	if opts.Client != nil {
		c := *opts.Client
		p.client = &c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DisableCompression = true // relay bodies as they are
		// Keep Prefetch's connections to a mirror for reuse.
		t.MaxIdleConnsPerHost = maxPrefetchConns
		p.client = &http.Client{Transport: t}
	}
	p.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	p.client.Jar = nil

	p.life, p.abort = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if p.srv, p.url, err = p.listen(p.serve, p.served); err != nil {
		p.abort()
		return nil, fmt.Errorf("start pkgproxy: %w", err)
	}
	p.unwatch = context.AfterFunc(ctx, func() {
		p.closeOnce.Do(func() { p.closeErr = p.shutdown(false) })
	})
	return p, nil
}

// listen serves h on a free port of 127.0.0.1, with the requests'
// contexts ended by the proxy's abort, until the server is closed; served
// is closed when it has stopped. It returns the server and its URL.
func (p *Proxy) listen(h http.HandlerFunc, served chan struct{}) (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{
		Handler:           h,
		BaseContext:       func(net.Listener) context.Context { return p.life },
		ReadHeaderTimeout: time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // ErrServerClosed once closed
	}()
	return srv, "http://" + ln.Addr().String(), nil
}

// URL returns the proxy's address, "http://127.0.0.1:<port>", for
// http_proxy.
func (p *Proxy) URL() string { return p.url }

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{
		Hits:              p.hits.Load(),
		Misses:            p.misses.Load(),
		Stored:            p.stored.Load(),
		PassThrough:       p.pass.Load(),
		BytesFromCache:    p.fromCache.Load(),
		BytesFromUpstream: p.fromUpstream.Load(),
	}
}

// Close stops listening and closes CONNECT tunnels, waits up to ten
// seconds for requests in flight, aborts those still running and returns
// once every connection and goroutine of the proxy is gone. It may be
// called more than once.
func (p *Proxy) Close() error {
	p.unwatch()
	p.closeOnce.Do(func() { p.closeErr = p.shutdown(true) })
	return p.closeErr
}

// shutdown stops the proxy, letting requests in flight finish for up to
// p.grace when graceful.
func (p *Proxy) shutdown(graceful bool) error {
	close(p.quit)
	grace := p.grace
	if !graceful {
		p.abort()
		grace = 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	err := p.srv.Shutdown(ctx)
	if err == nil && graceful {
		// Packages whose clients have them are still being stored.
		idle := make(chan struct{})
		go func() {
			p.wg.Wait()
			close(idle)
		}()
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	cancel()
	if err != nil {
		if graceful {
			p.log.Warn("pkgproxy: aborting requests in flight", "grace", grace)
		}
		err = p.srv.Close()
	}
	p.abort()
	p.mu.Lock()
	p.closed = true
	sessions := p.sessions
	p.sessions = nil
	p.mu.Unlock()
	for s := range sessions {
		s.srv.Close()
		<-s.served
	}
	p.wg.Wait()
	p.prefetches.Wait()
	<-p.served
	p.client.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close pkgproxy: %w", err)
	}
	return nil
}

// enter registers a handler; false once the proxy is closed.
func (p *Proxy) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.active++
	p.wg.Add(1)
	return true
}

func (p *Proxy) leave() {
	p.mu.Lock()
	p.active--
	p.mu.Unlock()
	p.wg.Done()
}

// inFlight returns the number of handlers running.
func (p *Proxy) inFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) { p.serveWith(w, r, nil) }

// serveWith serves r for the session whose hooks are h (nil for none).
func (p *Proxy) serveWith(w http.ResponseWriter, r *http.Request, h *Hooks) {
	if !p.enter() {
		http.Error(w, "pkgproxy: closed", http.StatusServiceUnavailable)
		return
	}
	defer p.leave()
	if r.Method == http.MethodConnect {
		p.pass.Add(1)
		p.tunnel(w, r)
		return
	}
	if !r.URL.IsAbs() || r.URL.Scheme != "http" || r.URL.Host == "" {
		http.Error(w, "pkgproxy: not an http:// proxy request", http.StatusBadRequest)
		return
	}
	canon, ok := packageURL(r.Method, r.URL)
	if !ok {
		p.pass.Add(1)
		p.log.Debug("pkgproxy pass", "method", r.Method, "url", r.URL.Redacted())
		p.forward(w, r)
		return
	}
	if h.checks() {
		if err := h.Check(canon, ""); err != nil {
			refuse(w, err)
			return
		}
		// A checked package is always sent whole, so that its digest
		// can be checked.
		r.Header = r.Header.Clone()
		for _, k := range conditionalHeaders {
			r.Header.Del(k)
		}
	}
	key, preimage := indexKey(canon)
	// A package Prefetch is downloading is served once it is cached.
	p.awaitPrefetch(r.Context(), key)
	if p.serveCached(w, r, key, canon, h) {
		return
	}
	p.misses.Add(1)
	if r.Method != http.MethodGet || conditional(r.Header) {
		p.log.Debug("pkgproxy miss, not stored", "method", r.Method, "url", canon)
		p.forward(w, r)
		return
	}
	p.log.Debug("pkgproxy miss", "url", canon, "key", key)
	p.fetch(w, r, key, preimage, canon, h)
}

// serveCached answers r from the cache and reports whether it did. It does
// not answer (false) when the package is not in the cache or its blob is
// missing or of the wrong size.
func (p *Proxy) serveCached(w http.ResponseWriter, r *http.Request, key, canon string, hooks *Hooks) bool {
	ctx := r.Context()
	if p.isBad(key) {
		return false
	}
	res, err := p.actions.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, cache.ErrNotFound) {
			p.log.Warn("pkgproxy: index lookup", "key", key, "err", err)
		}
		return false
	}
	out, ok := res.Outputs[output]
	if !ok {
		return false
	}
	size, err := p.store.Stat(ctx, out.Digest)
	if err != nil || size != out.Size {
		p.log.Warn("pkgproxy: cached package unusable, fetching again", "key", key, "digest", out.Digest, "size", size, "want", out.Size, "err", err)
		return false
	}
	var rc io.ReadCloser
	if r.Method == http.MethodGet {
		if rc, err = p.store.Open(ctx, out.Digest); err != nil {
			p.log.Warn("pkgproxy: open cached package", "key", key, "digest", out.Digest, "err", err)
			return false
		}
		defer rc.Close()
	}
	if hooks.checks() {
		if err := hooks.Check(canon, out.Digest); err != nil {
			if rc != nil {
				rc.Close()
			}
			refuse(w, err)
			return true
		}
	}
	p.hits.Add(1)
	p.log.Debug("pkgproxy hit", "method", r.Method, "url", r.URL.String(), "digest", out.Digest)
	h := w.Header()
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if rc == nil {
		return true
	}
	// Withhold the last byte until the blob verified at EOF, so that a
	// corrupt blob never reaches the client complete.
	hw := &holdLast{w: w}
	n, err := io.Copy(hw, rc)
	if err == nil && n != size {
		err = fmt.Errorf("blob %s changed size: %w", out.Digest, cache.ErrCorrupt)
	}
	if err == nil {
		err = hw.flush()
	}
	p.fromCache.Add(n)
	if err != nil {
		if errors.Is(err, cache.ErrCorrupt) {
			p.log.Warn("pkgproxy: cached package corrupt, fetching it again next time", "key", key, "digest", out.Digest, "err", err)
			p.setBad(key, true)
		}
		panic(http.ErrAbortHandler)
	}
	hooks.served(canon, out.Digest, size)
	return true
}

// fetch gets a package from upstream, streaming it to the client and into
// the store, and records it in the index once complete.
func (p *Proxy) fetch(w http.ResponseWriter, r *http.Request, key string, preimage []byte, canon string, hooks *Hooks) {
	// A client that leaves once it has the whole package must not cancel
	// storing it; one that leaves before stops the copy, and with it Put.
	ctx := p.life
	resp, err := p.roundTrip(r)
	if err != nil {
		http.Error(w, "pkgproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !identity(resp.Header) {
		p.relay(w, resp)
		return
	}

	type putResult struct {
		d   cache.Digest
		n   int64
		err error
	}
	pr, pw := io.Pipe()
	putc := make(chan putResult, 1)
	go func() {
		d, n, err := p.store.Put(ctx, pr, "")
		pr.CloseWithError(errStoreDone) // a Put that stopped early must not block the copy
		putc <- putResult{d, n, err}
	}()
	sw := &softWriter{w: pw}
	// The client gets the last byte once the package is indexed: a client
	// that has it all finds it in the cache on its next request.
	hw := &holdLast{w: w}
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(http.StatusOK)
	sum := sha256.New() // the session's digest, whether or not the store keeps the package
	n, err := io.Copy(io.MultiWriter(hw, sw, sum), resp.Body)
	p.fromUpstream.Add(n)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		pw.CloseWithError(err)
		<-putc
		p.log.Debug("pkgproxy: download incomplete, not stored", "url", r.URL.Redacted(), "err", err)
		panic(http.ErrAbortHandler) // never end a short body cleanly
	}
	pw.Close()
	// store commits the blob and indexes it: a refused package is cached
	// too, as any package of the repository.
	store := func() {
		put := <-putc
		if put.err == nil && sw.err != nil {
			put.err = sw.err
		}
		if put.err == nil && put.n != n {
			put.err = fmt.Errorf("stored %d of %d bytes", put.n, n)
		}
		if put.err != nil {
			p.log.Warn("pkgproxy: store package", "url", r.URL.String(), "err", put.err)
		} else {
			p.index(ctx, key, preimage, put.d, put.n)
		}
	}
	d := cache.Digest("sha256:" + hex.EncodeToString(sum.Sum(nil)))
	if hooks.checks() {
		if err := hooks.Check(canon, d); err != nil {
			store()
			p.log.Debug("pkgproxy: package refused", "url", canon, "err", err)
			panic(http.ErrAbortHandler) // the client never gets the last byte
		}
	}
	// The client gets its last byte and its connection back now, not
	// after the store's and the index's syncs (most of a miss's time for
	// a small package, and apt asks for the next one on the same
	// connection): they finish after the handler, counted as a request in
	// flight. A request for the package meanwhile waits for the index, as
	// for a prefetch.
	done, first := p.startPrefetch([][2]string{{key, ""}})
	if !first {
		done = func() {}
	}
	if err := hw.flush(); err != nil {
		store() // the client left with all but the last byte: keep the package
		done()
		panic(http.ErrAbortHandler)
	}
	hooks.served(canon, d, n)
	p.mu.Lock()
	p.active++
	p.wg.Add(1) // the handler's own count keeps the group from zero
	p.mu.Unlock()
	go func() {
		defer p.leave()
		defer done()
		store()
	}()
}

// index records the package blob d, n bytes, under key, and reports
// whether it did.
func (p *Proxy) index(ctx context.Context, key string, preimage []byte, d cache.Digest, n int64) bool {
	res := &cache.ActionResult{
		Step:    Step,
		Builder: Step,
		Outputs: map[string]cache.Output{output: {Digest: d, Size: n, MediaType: mediaType}},
	}
	if err := p.actions.Put(ctx, key, preimage, res); err != nil {
		p.log.Warn("pkgproxy: index package", "key", key, "digest", d, "err", err)
		return false
	}
	p.setBad(key, false)
	p.stored.Add(1)
	return true
}

// errStoreDone ends the pipe into Store.Put once Put returned.
var errStoreDone = errors.New("store put returned")

// softWriter writes to w until its first error, which it keeps, and
// discards the rest: a failing store must not fail the download.
type softWriter struct {
	w   io.Writer
	err error
}

func (s *softWriter) Write(b []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
	return len(b), nil
}

// holdLast writes to w all but the last byte written to it, which flush
// writes.
type holdLast struct {
	w    io.Writer
	last []byte // 0 or 1 byte
}

func (h *holdLast) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if err := h.flush(); err != nil {
		return 0, err
	}
	if _, err := h.w.Write(b[:len(b)-1]); err != nil {
		return 0, err
	}
	h.last = append(h.last, b[len(b)-1])
	return len(b), nil
}

func (h *holdLast) flush() error {
	if len(h.last) == 0 {
		return nil
	}
	_, err := h.w.Write(h.last)
	h.last = h.last[:0]
	return err
}

// forward relays r upstream and the answer back, uncached.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request) {
	resp, err := p.roundTrip(r)
	if err != nil {
		http.Error(w, "pkgproxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	p.relay(w, resp)
}

// roundTrip sends r upstream without its hop-by-hop headers.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	body := r.Body
	if r.ContentLength == 0 {
		body = http.NoBody
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), body)
	if err != nil {
		return nil, err
	}
	out.ContentLength = r.ContentLength
	out.Header = r.Header.Clone()
	removeHop(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // no Go default
	}
	resp, err := p.client.Do(out)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Redacted(), unwrapURLError(err))
	}
	return resp, nil
}

// unwrapURLError drops the *url.Error of Client.Do, whose text repeats
// the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// relay copies resp to w as it is, but for hop-by-hop headers.
func (p *Proxy) relay(w http.ResponseWriter, resp *http.Response) {
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	n, err := io.Copy(w, resp.Body)
	p.fromUpstream.Add(n)
	if err != nil {
		panic(http.ErrAbortHandler) // never end a short body cleanly
	}
}

// tunnel serves CONNECT: a TCP tunnel to r.Host, closed when either side
// ends it, when the request is aborted or when the proxy closes.
func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request) {
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, "pkgproxy: connect "+r.Host+": "+unwrapURLError(err).Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "pkgproxy: connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	down, brw, err := hj.Hijack()
	if err != nil {
		p.log.Debug("pkgproxy: hijack", "err", err)
		return
	}
	defer down.Close()
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	var closeBoth sync.Once
	stop := func() {
		closeBoth.Do(func() {
			_ = up.Close()
			_ = down.Close()
		})
	}
	defer context.AfterFunc(r.Context(), stop)()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(up, brw.Reader) // what the client sent, buffered or not
		closeWrite(up)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(countingWriter{down, &p.fromUpstream}, up)
		closeWrite(down)
		done <- struct{}{}
	}()
	for range 2 {
		select {
		case <-done:
		case <-p.quit:
			stop()
			<-done
		}
	}
	stop()
}

// countingWriter adds what it writes to n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// closeWrite half-closes c when it can, so the other side sees EOF.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

func (p *Proxy) isBad(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bad[key]
}

// setBad marks key as having a corrupt blob, so that it is fetched again,
// or clears the mark.
func (p *Proxy) setBad(key string, bad bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bad {
		p.bad[key] = true
	} else {
		delete(p.bad, key)
	}
}

// packageURL returns the canonical form of u and true when a method
// request of u is a cacheable package request: GET or HEAD of an http://
// URL with a plain host, no user info and no query, whose path ends in a
// package extension. The canonical form lowercases the host and drops a
// default port; packageURL(m, parse(canon)) returns canon again.
func packageURL(method string, u *url.URL) (string, bool) {
	if method != http.MethodGet && method != http.MethodHead {
		return "", false
	}
	if u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", false
	}
	host, ok := canonicalHost(u.Host)
	if !ok {
		return "", false
	}
	path := u.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		return "", false
	}
	name := path[strings.LastIndexByte(path, '/')+1:]
	for _, ext := range packageExts {
		if len(name) > len(ext) && strings.HasSuffix(name, ext) {
			return "http://" + host + path, true
		}
	}
	return "", false
}

// canonicalHost returns host ("name[:port]" or "[ipv6][:port]") lowercased
// without a port 80, and false for anything else than a DNS name, an IP
// address and a decimal port.
func canonicalHost(host string) (string, bool) {
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		name, port = host[:i], host[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", false
		}
		port = strings.TrimLeft(port, "0")
		if port == "" {
			return "", false
		}
	}
	if port == "80" {
		port = ""
	}
	if v6, ok := strings.CutPrefix(name, "["); ok {
		v6, ok = strings.CutSuffix(v6, "]")
		a, err := netip.ParseAddr(v6)
		if !ok || err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		name = "[" + a.String() + "]"
	} else {
		name = strings.ToLower(name)
		if name == "" || len(name) > 253 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789.-_") != "" {
			return "", false
		}
	}
	if port != "" {
		return name + ":" + port, true
	}
	return name, true
}

// indexKey returns the index key of a canonical package URL and its
// preimage, {"type":"imsbuild/pkgproxy/v1","url":"<canon>"}.
func indexKey(canon string) (key string, preimage []byte) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		Type string `json:"type"`
		URL  string `json:"url"`
	}{keyType, canon}) // cannot fail for strings
	preimage = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	sum := sha256.Sum256(preimage)
	return hex.EncodeToString(sum[:]), preimage
}

// conditional reports whether h asks for a part or a conditional answer.
func conditional(h http.Header) bool {
	for _, k := range conditionalHeaders {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// identity reports whether a response body is not content-encoded.
func identity(h http.Header) bool {
	ce := h.Get("Content-Encoding")
	return ce == "" || strings.EqualFold(ce, "identity")
}

// copyHeader sets dst to the end-to-end headers of src.
func copyHeader(dst, src http.Header) {
	h := src.Clone()
	removeHop(h)
	for k, vv := range h {
		dst[k] = vv
	}
	if _, ok := dst["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no sniffing: relay what upstream said
	}
}

// removeHop deletes the hop-by-hop headers of h, those named in its
// Connection header included.
func removeHop(h http.Header) {
	for _, f := range h["Connection"] {
		for name := range strings.SplitSeq(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}
