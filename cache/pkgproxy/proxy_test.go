package pkgproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 10 * time.Second

const (
	debPath     = "/pool/main/x/x_1.0_amd64.deb"
	inRelease   = "/dists/bookworm/InRelease"
	missingDeb  = "/pool/main/m/missing_1.0_amd64.deb"
	truncCL     = "/pool/main/t/trunc_1.0_amd64.deb"       // Content-Length, closed half-way
	truncChunk  = "/pool/main/t/trunc-chunk_1.0_amd64.deb" // chunked, closed half-way
	slowDeb     = "/pool/main/s/slow_1.0_amd64.deb"        // half, then waits for release
	redirectDeb = "/pool/main/r/redirect_1.0_amd64.deb"    // 302 to debPath
	hopPath     = "/hop"                                   // records request headers, sends hop-by-hop ones
)

// content returns n deterministic pseudo-random bytes for seed.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// mirror is a fake package repository counting the requests it gets.
type mirror struct {
	*httptest.Server
	files map[string][]byte

	mu       sync.Mutex
	requests map[string]int
	header   http.Header // of the last request to hopPath

	slowStarted chan struct{} // gets a value when slowDeb has sent its first half
	release     chan struct{} // closed to let slowDeb finish
	releaseOnce sync.Once
}

func newMirror(t *testing.T) *mirror {
	t.Helper()
	m := &mirror{
		files: map[string][]byte{
			debPath:   content(1, 300<<10),
			inRelease: []byte("Origin: Debian\nSuite: stable\n"),
			slowDeb:   content(2, 200<<10),
		},
		requests:    map[string]int{},
		slowStarted: make(chan struct{}, 10),
		release:     make(chan struct{}),
	}
	for i := range 5 {
		m.files[fmt.Sprintf("/pool/main/c/c%d_1.0_amd64.deb", i)] = content(uint64(10+i), 100<<10+i*1000)
	}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(func() {
		m.releaseSlow()
		m.Close()
	})
	return m
}

func (m *mirror) releaseSlow() { m.releaseOnce.Do(func() { close(m.release) }) }

// count returns how many requests path got.
func (m *mirror) count(path string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests[path]
}

func (m *mirror) url(path string) string { return m.URL + path }

func (m *mirror) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.requests[r.URL.Path]++
	if r.URL.Path == hopPath {
		m.header = r.Header.Clone()
	}
	m.mu.Unlock()
	switch r.URL.Path {
	case truncCL, truncChunk:
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if r.URL.Path == truncCL {
			fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 100<<10)
		} else {
			fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", 50<<10)
		}
		brw.Write(content(3, 50<<10))
		brw.Flush()
	case slowDeb:
		data := m.files[slowDeb]
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		m.slowStarted <- struct{}{}
		select {
		case <-m.release:
			w.Write(data[len(data)/2:])
		case <-r.Context().Done():
		}
	case redirectDeb:
		http.Redirect(w, r, debPath, http.StatusFound)
	case hopPath:
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "e")
		io.WriteString(w, "hop")
	default:
		data, ok := m.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, r.URL.Path, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), bytes.NewReader(data))
	}
}

// waitSlow waits until slowDeb has sent its first half.
func (m *mirror) waitSlow(t *testing.T) {
	t.Helper()
	select {
	case <-m.slowStarted:
	case <-time.After(testTimeout):
		t.Fatal("slow download did not start")
	}
}

func newCache(t testing.TB) *local.Cache {
	t.Helper()
	c, err := local.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatalf("local.Open() = %v", err)
	}
	return c
}

// startProxy starts a proxy on c, closed at cleanup.
func startProxy(t *testing.T, c *local.Cache) *Proxy {
	t.Helper()
	return startProxyOpts(t, Options{Store: c, Actions: c.Actions()})
}

func startProxyOpts(t *testing.T, opts Options) *Proxy {
	t.Helper()
	p, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return p
}

// proxyClient returns a client that sends everything through p.
func proxyClient(t *testing.T, p *Proxy) *http.Client {
	t.Helper()
	u, err := url.Parse(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u)},
		Timeout:   testTimeout,
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// get fetches rawURL with method through c.
func get(t *testing.T, c *http.Client, method, rawURL string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// mustGet is get that fails the test on an error or another status.
func mustGet(t *testing.T, c *http.Client, method, rawURL string, status int) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := get(t, c, method, rawURL)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d", method, rawURL, resp.StatusCode, status)
	}
	return resp, body
}

// indexed returns the index entry of rawURL, or nil, once p is idle (a
// client may have its whole body before the proxy indexed it).
func indexed(t *testing.T, p *Proxy, c *local.Cache, rawURL string) *cache.ActionResult {
	t.Helper()
	poll(t, "the proxy to be idle", func() bool { return p.inFlight() == 0 })
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	canon, ok := packageURL(http.MethodGet, u)
	if !ok {
		t.Fatalf("%s is not a package URL", rawURL)
	}
	key, _ := indexKey(canon)
	res, err := c.Actions().Get(t.Context(), key)
	if errors.Is(err, cache.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// stats returns p's stats once p is idle.
func stats(t *testing.T, p *Proxy) Stats {
	t.Helper()
	poll(t, "the proxy to be idle", func() bool { return p.inFlight() == 0 })
	return p.Stats()
}

// poll waits until cond holds, failing the test after testTimeout.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMissThenHit(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	want := m.files[debPath]

	resp, body := mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
	if !bytes.Equal(body, want) {
		t.Fatalf("miss: got %d bytes, want the %d of the mirror", len(body), len(want))
	}
	if resp.Header.Get("Etag") != `"v1"` || resp.Header.Get("Last-Modified") == "" {
		t.Errorf("miss headers = %v, want the mirror's ETag and Last-Modified", resp.Header)
	}
	if n := m.count(debPath); n != 1 {
		t.Fatalf("upstream requests after the miss = %d, want 1", n)
	}
	res := indexed(t, p, c, m.url(debPath))
	if res == nil {
		t.Fatal("no index entry after a complete download")
	}
	out := res.Outputs[output]
	if res.Step != Step || out.Size != int64(len(want)) || !out.Digest.Valid() {
		t.Errorf("index entry = %+v, want step %s and a %d-byte package", res, Step, len(want))
	}

	resp, body = mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
	if !bytes.Equal(body, want) {
		t.Fatalf("hit: got %d bytes, want the %d of the mirror", len(body), len(want))
	}
	if n := m.count(debPath); n != 1 {
		t.Errorf("upstream requests after the hit = %d, want 1", n)
	}
	if resp.ContentLength != int64(len(want)) || resp.Header.Get("Content-Type") != mediaType {
		t.Errorf("hit: Content-Length %d, Content-Type %q; want %d, %s", resp.ContentLength, resp.Header.Get("Content-Type"), len(want), mediaType)
	}
	wantStats := Stats{Hits: 1, Misses: 1, Stored: 1, BytesFromCache: int64(len(want)), BytesFromUpstream: int64(len(want))}
	if diff := cmp.Diff(wantStats, stats(t, p)); diff != "" {
		t.Errorf("Stats() (-want +got):\n%s", diff)
	}

	// A second proxy on the same cache (a later build) hits at once.
	p2 := startProxy(t, c)
	_, body = mustGet(t, proxyClient(t, p2), http.MethodGet, m.url(debPath), http.StatusOK)
	if !bytes.Equal(body, want) || m.count(debPath) != 1 || stats(t, p2).Hits != 1 {
		t.Errorf("second proxy: %d bytes, %d upstream requests, %+v; want a hit", len(body), m.count(debPath), stats(t, p2))
	}
}

func TestPassThroughFresh(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)

	for range 2 {
		_, body := mustGet(t, client, http.MethodGet, m.url(inRelease), http.StatusOK)
		if !bytes.Equal(body, m.files[inRelease]) {
			t.Fatalf("InRelease = %q, want %q", body, m.files[inRelease])
		}
	}
	if n := m.count(inRelease); n != 2 {
		t.Errorf("upstream InRelease requests = %d, want 2 (metadata is never cached)", n)
	}
	for range 2 {
		mustGet(t, client, http.MethodGet, m.url(missingDeb), http.StatusNotFound)
	}
	if n := m.count(missingDeb); n != 2 {
		t.Errorf("upstream requests of a 404 package = %d, want 2", n)
	}
	if indexed(t, p, c, m.url(missingDeb)) != nil {
		t.Error("a 404 got an index entry")
	}
	mustGet(t, client, http.MethodGet, m.url("/dists/bookworm/nothing"), http.StatusNotFound)

	// Ranges and conditional requests of an uncached package pass through.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.url(debPath), nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, m.files[debPath][10:20]) || resp.Header.Get("Content-Range") == "" {
		t.Errorf("range: status %d, %d bytes, Content-Range %q; want 206 of 10 bytes", resp.StatusCode, len(body), resp.Header.Get("Content-Range"))
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, m.url(debPath), nil)
	req.Header.Set("If-None-Match", `"v1"`)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
	}
	if indexed(t, p, c, m.url(debPath)) != nil {
		t.Error("a partial or conditional answer got an index entry")
	}

	// Other methods pass through.
	resp, err = client.Post(m.url(debPath), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := m.count(debPath); got != 3 {
		t.Errorf("upstream package requests = %d, want 3 (range, conditional, POST)", got)
	}
	st := stats(t, p)
	if st.Hits != 0 || st.Stored != 0 || st.Misses != 4 || st.PassThrough != 4 {
		t.Errorf("Stats() = %+v, want 0 hits, 0 stored, 4 misses (404 twice, range, conditional), 4 passed (InRelease twice, dists 404, POST)", st)
	}
}

func TestRedirectRelayed(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, _ := mustGet(t, client, http.MethodGet, m.url(redirectDeb), http.StatusFound)
	if loc := resp.Header.Get("Location"); loc != debPath {
		t.Errorf("Location = %q, want %q", loc, debPath)
	}
	if m.count(debPath) != 0 || indexed(t, p, c, m.url(redirectDeb)) != nil {
		t.Error("the proxy followed or cached a redirect")
	}
}

func TestHopByHopHeaders(t *testing.T) {
	m := newMirror(t)
	p := startProxy(t, newCache(t))
	client := proxyClient(t, p)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.url(hopPath), nil)
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "s")
	req.Header.Set("Proxy-Authorization", "Basic eDp5")
	req.Header.Set("X-Keep", "k")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	m.mu.Lock()
	got := m.header
	m.mu.Unlock()
	for _, k := range []string{"X-Secret", "Proxy-Authorization"} {
		if v := got.Get(k); v != "" {
			t.Errorf("upstream got %s: %q, want it removed", k, v)
		}
	}
	if got.Get("X-Keep") != "k" {
		t.Errorf("upstream headers %v lack X-Keep", got)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("client got %s: %q, want it removed", k, v)
		}
	}
	if resp.Header.Get("X-End") != "e" {
		t.Errorf("client headers %v lack X-End", resp.Header)
	}
}

func TestNotAProxyRequest(t *testing.T) {
	m := newMirror(t)
	p := startProxy(t, newCache(t))
	resp, err := http.Get(p.URL() + debPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET %s: status %d, want 400", debPath, resp.StatusCode)
	}
	if m.count(debPath) != 0 {
		t.Error("a plain request reached upstream")
	}
}

func TestStartRequiresCache(t *testing.T) {
	c := newCache(t)
	for _, opts := range []Options{{}, {Store: c}, {Actions: c.Actions()}} {
		if p, err := Start(t.Context(), opts); err == nil {
			p.Close()
			t.Errorf("Start(%+v) = nil error, want one", opts)
		}
	}
}

func TestTruncatedUpstreamNotStored(t *testing.T) {
	for _, path := range []string{truncCL, truncChunk} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			m := newMirror(t)
			c := newCache(t)
			p := startProxy(t, c)
			client := proxyClient(t, p)
			for i := 1; i <= 2; i++ {
				resp, body, err := get(t, client, http.MethodGet, m.url(path))
				if err == nil {
					t.Fatalf("GET %d: status %d, %d bytes and no error; want a failed download", i, resp.StatusCode, len(body))
				}
				poll(t, "the proxy to finish", func() bool { return p.inFlight() == 0 })
				if indexed(t, p, c, m.url(path)) != nil {
					t.Fatalf("GET %d: truncated download got an index entry", i)
				}
				if n := m.count(path); n != i {
					t.Errorf("GET %d: upstream requests = %d, want %d (fetched again)", i, n, i)
				}
			}
			if st := stats(t, p); st.Misses != 2 || st.Stored != 0 {
				t.Errorf("Stats() = %+v, want 2 misses, 0 stored", st)
			}
		})
	}
}

func TestClientDisconnectNotStored(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)

	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.url(slowDeb), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m.waitSlow(t)
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	poll(t, "the proxy to finish", func() bool { return p.inFlight() == 0 })
	if indexed(t, p, c, m.url(slowDeb)) != nil {
		t.Fatal("an abandoned download got an index entry")
	}

	m.releaseSlow()
	_, body := mustGet(t, client, http.MethodGet, m.url(slowDeb), http.StatusOK)
	if !bytes.Equal(body, m.files[slowDeb]) {
		t.Errorf("refetch: %d bytes, want the mirror's %d", len(body), len(m.files[slowDeb]))
	}
	if n := m.count(slowDeb); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
	if indexed(t, p, c, m.url(slowDeb)) == nil {
		t.Error("complete refetch has no index entry")
	}
}

func TestBrokenBlobRefetched(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage breaks the blob file at path.
		damage func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 1000); err != nil {
				t.Fatal(err)
			}
		}},
		// The cache checks a hit's blob before it is served (the write
		// changed its ctime), so the client gets the mirror's copy at once.
		{"flipped", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("corrupt"), 5000); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMirror(t)
			c := newCache(t)
			p := startProxy(t, c)
			client := proxyClient(t, p)
			want := m.files[debPath]
			mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
			res := indexed(t, p, c, m.url(debPath))
			if res == nil {
				t.Fatal("no index entry")
			}
			blob := c.BlobPath(res.Outputs[output].Digest)
			if err := os.Chmod(blob, 0o644); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, blob)

			upstream := 2
			_, body := mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
			if !bytes.Equal(body, want) {
				t.Fatalf("after damage: %d bytes differing from the mirror's %d", len(body), len(want))
			}
			if n := m.count(debPath); n != upstream {
				t.Errorf("upstream requests = %d, want %d", n, upstream)
			}
			// The refetch healed the blob: a hit again.
			_, body = mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
			if !bytes.Equal(body, want) || m.count(debPath) != upstream {
				t.Errorf("after heal: %d bytes, %d upstream requests; want a correct hit", len(body), m.count(debPath))
			}
		})
	}
}

// damageOnOpen damages a blob between the lookup (which checks it) and the
// read: the proxy must still never serve it complete.
type damageOnOpen struct {
	*local.Cache
	once   sync.Once
	damage func(d cache.Digest)
}

func (s *damageOnOpen) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	s.once.Do(func() { s.damage(d) })
	return s.Cache.Open(ctx, d)
}

func TestBlobDamagedAfterLookupAborted(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p0 := startProxy(t, c)
	client0 := proxyClient(t, p0)
	want := m.files[debPath]
	mustGet(t, client0, http.MethodGet, m.url(debPath), http.StatusOK)
	stats(t, p0) // stored and indexed: another proxy finds it
	armed := false
	s := &damageOnOpen{Cache: c}
	s.damage = func(d cache.Digest) {
		if !armed {
			return
		}
		blob := c.BlobPath(d)
		if err := os.Chmod(blob, 0o644); err != nil {
			t.Error(err)
		}
		f, err := os.OpenFile(blob, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("corrupt"), 5000); err != nil {
			t.Error(err)
		}
	}
	p := startProxyOpts(t, Options{Store: s, Actions: c.Actions()})
	client := proxyClient(t, p)
	armed = true
	resp, body, err := get(t, client, http.MethodGet, m.url(debPath))
	if err == nil {
		t.Fatalf("corrupt blob served: status %d, %d bytes, no error", resp.StatusCode, len(body))
	}
	if len(body) >= len(want) {
		t.Fatalf("corrupt blob served complete (%d bytes)", len(body))
	}
	if n := m.count(debPath); n != 1 {
		t.Fatalf("upstream requests = %d, want 1 (served from the cache)", n)
	}
	_, body = mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
	if !bytes.Equal(body, want) || m.count(debPath) != 2 {
		t.Errorf("after the abort: %d bytes, %d upstream requests; want the mirror's copy fetched again", len(body), m.count(debPath))
	}
}

func TestHead(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	size := int64(len(m.files[debPath]))

	resp, _ := mustGet(t, client, http.MethodHead, m.url(debPath), http.StatusOK)
	if resp.ContentLength != size || m.count(debPath) != 1 || indexed(t, p, c, m.url(debPath)) != nil {
		t.Fatalf("uncached HEAD: Content-Length %d, %d upstream requests, entry %v; want %d, 1, none",
			resp.ContentLength, m.count(debPath), indexed(t, p, c, m.url(debPath)), size)
	}
	mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
	resp, body := mustGet(t, client, http.MethodHead, m.url(debPath), http.StatusOK)
	if resp.ContentLength != size || len(body) != 0 || m.count(debPath) != 2 {
		t.Errorf("cached HEAD: Content-Length %d, %d body bytes, %d upstream requests; want %d, 0, 2",
			resp.ContentLength, len(body), m.count(debPath), size)
	}
	if st := stats(t, p); st.Hits != 1 || st.Misses != 2 || st.BytesFromCache != 0 {
		t.Errorf("Stats() = %+v, want 1 hit (the HEAD), 2 misses, 0 bytes from the cache", st)
	}
}

// tlsServer starts an https server answering "secure <path>" and returns it
// with a client trusting it that goes through p.
func tlsServer(t *testing.T, p *Proxy) (*httptest.Server, *http.Client) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	client := proxyClient(t, p)
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	return srv, client
}

func TestConnectTunnel(t *testing.T) {
	p := startProxy(t, newCache(t))
	srv, client := tlsServer(t, p)
	for i := range 3 {
		_, body := mustGet(t, client, http.MethodGet, srv.URL+"/pool/a.deb", http.StatusOK)
		if string(body) != "secure /pool/a.deb" {
			t.Fatalf("GET %d through the tunnel = %q", i, body)
		}
	}
	poll(t, "tunnel bytes to be counted", func() bool { return p.Stats().BytesFromUpstream > 0 })
	if st := p.Stats(); st.PassThrough != 1 || st.Hits+st.Misses != 0 {
		t.Errorf("Stats() = %+v, want one tunnel (reused), no package traffic, bytes from upstream", st)
	}

	// A tunnel to nowhere is a 502.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", dead, dead)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("CONNECT to a closed port: status %d, want 502", resp.StatusCode)
	}
}

func TestConcurrent(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	var paths []string
	for i := range 5 {
		paths = append(paths, fmt.Sprintf("/pool/main/c/c%d_1.0_amd64.deb", i))
	}
	round := func() {
		var wg sync.WaitGroup
		for i := range 20 {
			path := paths[i%len(paths)]
			wg.Go(func() {
				resp, body, err := get(t, client, http.MethodGet, m.url(path))
				if err != nil {
					t.Errorf("GET %s: %v", path, err)
					return
				}
				if resp.StatusCode != http.StatusOK || !bytes.Equal(body, m.files[path]) {
					t.Errorf("GET %s: status %d, %d bytes; want 200 and the mirror's %d", path, resp.StatusCode, len(body), len(m.files[path]))
				}
			})
		}
		wg.Wait()
	}
	round()
	counts := map[string]int{}
	for _, path := range paths {
		counts[path] = m.count(path)
		if n := counts[path]; n < 1 || n > 4 {
			t.Errorf("upstream requests of %s = %d, want 1 to 4", path, n)
		}
		if indexed(t, p, c, m.url(path)) == nil {
			t.Errorf("%s has no index entry", path)
		}
	}
	st := stats(t, p)
	if st.Hits+st.Misses != 20 || st.Stored < 5 || st.Stored != st.Misses {
		t.Errorf("Stats() after round 1 = %+v, want 20 requests, every miss stored", st)
	}
	round()
	for _, path := range paths {
		if n := m.count(path); n != counts[path] {
			t.Errorf("round 2: upstream requests of %s = %d, want %d (all hits)", path, n, counts[path])
		}
	}
	if got := stats(t, p).Hits - st.Hits; got != 20 {
		t.Errorf("round 2 hits = %d, want 20", got)
	}
}

// failingStore is a local cache whose Put fails half-way.
type failingStore struct{ *local.Cache }

func (f failingStore) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	if _, err := io.CopyN(io.Discard, r, 1000); err != nil {
		return "", 0, err
	}
	return "", 0, errors.New("disk full")
}

func TestStoreFailureStillServes(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxyOpts(t, Options{Store: failingStore{c}, Actions: c.Actions()})
	client := proxyClient(t, p)
	for i := 1; i <= 2; i++ {
		_, body := mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK)
		if !bytes.Equal(body, m.files[debPath]) {
			t.Fatalf("GET %d: %d bytes, want the mirror's %d", i, len(body), len(m.files[debPath]))
		}
		if m.count(debPath) != i || indexed(t, p, c, m.url(debPath)) != nil {
			t.Fatalf("GET %d: %d upstream requests, entry %v; want %d, none", i, m.count(debPath), indexed(t, p, c, m.url(debPath)), i)
		}
	}
}

// goroutineBaseline returns the goroutine count, for noLeak.
func goroutineBaseline() int { return runtime.NumGoroutine() }

// noLeak waits until no more goroutines run than base, else fails with
// their stacks.
func noLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// downloadFailed GETs rawURL and fails the test unless the download fails:
// an error, or an answer other than 200 (502 when aborted before the
// upstream answered).
func downloadFailed(t *testing.T, c *http.Client, rawURL string) error {
	resp, body, err := get(t, c, http.MethodGet, rawURL)
	if err == nil && resp.StatusCode == http.StatusOK {
		err = fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(body))
		t.Errorf("aborted download of %s succeeded: %v", rawURL, err)
	}
	return err
}

func TestCloseAbortsAndLeaksNothing(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	base := goroutineBaseline()

	p, err := Start(t.Context(), Options{Store: c, Actions: c.Actions(), grace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	client := proxyClient(t, p)
	tlsClient := proxyClient(t, p)
	tlsClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK) // miss
	mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK) // hit
	mustGet(t, client, http.MethodGet, m.url(inRelease), http.StatusOK)
	mustGet(t, tlsClient, http.MethodGet, srv.URL, http.StatusOK) // leaves an idle tunnel

	slow := make(chan error, 1)
	go func() { slow <- downloadFailed(t, client, m.url(slowDeb)) }()
	m.waitSlow(t)

	start := time.Now()
	if err := p.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close() took %v with a stalled download, want about the 300ms grace", d)
	}
	select {
	case <-slow:
	case <-time.After(testTimeout):
		t.Fatal("download still running after Close")
	}
	if indexed(t, p, c, m.url(slowDeb)) != nil {
		t.Error("aborted download got an index entry")
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close() = %v", err)
	}
	if _, _, err := get(t, client, http.MethodGet, m.url(inRelease)); err == nil {
		t.Error("request after Close succeeded")
	}
	m.releaseSlow()
	client.CloseIdleConnections()
	tlsClient.CloseIdleConnections()
	noLeak(t, base)
}

func TestCloseWaitsForRequests(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p, err := Start(t.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		t.Fatal(err)
	}
	client := proxyClient(t, p)
	slow := make(chan []byte, 1)
	go func() {
		_, body, _ := get(t, client, http.MethodGet, m.url(slowDeb))
		slow <- body
	}()
	m.waitSlow(t)
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	poll(t, "Close to stop listening", func() bool {
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	m.releaseSlow()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close() = %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Close() did not return")
	}
	if body := <-slow; !bytes.Equal(body, m.files[slowDeb]) {
		t.Errorf("download in flight during Close: %d bytes, want %d", len(body), len(m.files[slowDeb]))
	}
	if indexed(t, p, c, m.url(slowDeb)) == nil {
		t.Error("download completed during Close has no index entry")
	}
}

func TestContextCancelStops(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	base := goroutineBaseline()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	p, err := Start(ctx, Options{Store: c, Actions: c.Actions()})
	if err != nil {
		t.Fatal(err)
	}
	client := proxyClient(t, p)
	tlsClient := proxyClient(t, p)
	tlsClient.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	mustGet(t, tlsClient, http.MethodGet, srv.URL, http.StatusOK)
	slow := make(chan error, 1)
	go func() {
		slow <- downloadFailed(t, client, m.url(slowDeb))
	}()
	m.waitSlow(t)

	cancel()
	select {
	case <-slow:
	case <-time.After(testTimeout):
		t.Fatal("download still running after cancel")
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Errorf("Close() after cancel = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close() after cancel took %v", d)
	}
	if indexed(t, p, c, m.url(slowDeb)) != nil {
		t.Error("cancelled download got an index entry")
	}
	m.releaseSlow()
	client.CloseIdleConnections()
	tlsClient.CloseIdleConnections()
	noLeak(t, base)
}

func TestStartCancelled(t *testing.T) {
	c := newCache(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if p, err := Start(ctx, Options{Store: c, Actions: c.Actions()}); err == nil {
		p.Close()
		t.Error("Start(cancelled) = nil error, want one")
	}
}
