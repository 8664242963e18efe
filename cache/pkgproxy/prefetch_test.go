package pkgproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
)

// cFiles are the five small packages of the mirror.
func cFiles(m *mirror) []File {
	var out []File
	for i := range 5 {
		p := fmt.Sprintf("/pool/main/c/c%d_1.0_amd64.deb", i)
		out = append(out, File{URL: m.url(p), Digest: digestOf(m.files[p])})
	}
	return out
}

// concurrency wraps a mirror's handler, recording the most requests it
// served at once. Each package request waits until want requests arrived
// (or a second passed), so a sequential client shows as 1.
type concurrency struct {
	next http.Handler
	want int

	mu            sync.Mutex
	now, max, all int
	arrived       chan struct{}
}

func (c *concurrency) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.now++
	c.all++
	c.max = max(c.max, c.now)
	if c.all == c.want {
		close(c.arrived)
	}
	c.mu.Unlock()
	select {
	case <-c.arrived:
	case <-time.After(time.Second):
	}
	c.next.ServeHTTP(w, r)
	c.mu.Lock()
	c.now--
	c.mu.Unlock()
}

func TestPrefetchParallelThenHits(t *testing.T) {
	m := newMirror(t)
	conc := &concurrency{next: http.HandlerFunc(m.serve), want: 4, arrived: make(chan struct{})}
	m.Config.Handler = conc
	c := newCache(t)
	p := startProxy(t, c)
	files := cFiles(m)
	files = append(files, File{URL: m.url(inRelease), Digest: digestOf(m.files[inRelease])}) // no package: skipped

	st := p.Prefetch(t.Context(), files, 4)
	want := PrefetchStats{Fetched: 5, Skipped: 1}
	for _, f := range files[:5] {
		want.Bytes += int64(len(m.files[mustParse(t, f.URL).Path]))
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("Prefetch() stats (-want +got):\n%s", diff)
	}
	conc.mu.Lock()
	maxConc := conc.max
	conc.mu.Unlock()
	if maxConc != 4 {
		t.Errorf("upstream saw at most %d requests at once, want 4", maxConc)
	}
	if got := m.count(inRelease); got != 0 {
		t.Errorf("the mirror got %d requests for %s, want 0", got, inRelease)
	}

	// The session's client then gets every package from the cache.
	var served []string
	var mu sync.Mutex
	s := startSession(t, p, Hooks{Served: func(url string, d cache.Digest, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		served = append(served, url)
	}})
	client := sessionClient(t, s)
	for _, f := range files[:5] {
		path := mustParse(t, f.URL).Path
		_, body := mustGet(t, client, http.MethodGet, f.URL, http.StatusOK)
		if digestOf(body) != f.Digest {
			t.Errorf("GET %s: digest %s, want %s", path, digestOf(body), f.Digest)
		}
		if got := m.count(path); got != 1 {
			t.Errorf("the mirror got %d requests for %s, want 1 (the prefetch)", got, path)
		}
	}
	if got := stats(t, p); got.Hits != 5 || got.Misses != 0 || got.Stored != 5 {
		t.Errorf("Stats() = %+v, want 5 hits, 0 misses, 5 stored", got)
	}
	if len(served) != 5 {
		t.Errorf("Served saw %d packages, want 5", len(served))
	}

	// A second prefetch finds them all.
	if got := p.Prefetch(t.Context(), files[:5], 4); got != (PrefetchStats{Cached: 5}) {
		t.Errorf("second Prefetch() = %+v, want 5 cached", got)
	}
}

// A client asking for a package while it is prefetched waits for the
// prefetch and gets it from the cache: it is downloaded once.
func TestPrefetchInFlightWaits(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	client := proxyClient(t, p)
	done := make(chan PrefetchStats)
	go func() {
		done <- p.Prefetch(t.Context(), []File{{URL: m.url(slowDeb), Digest: digestOf(m.files[slowDeb])}}, 1)
	}()
	m.waitSlow(t)
	type result struct {
		body []byte
		err  error
	}
	got := make(chan result)
	go func() {
		_, body, err := get(t, client, http.MethodGet, m.url(slowDeb))
		got <- result{body, err}
	}()
	// The request is waiting, not downloading.
	poll(t, "the client's request to arrive", func() bool { return p.inFlight() == 1 })
	m.releaseSlow()
	if st := <-done; st.Fetched != 1 {
		t.Fatalf("Prefetch() = %+v, want 1 fetched", st)
	}
	r := <-got
	if r.err != nil || digestOf(r.body) != digestOf(m.files[slowDeb]) {
		t.Fatalf("GET while prefetching: %d bytes, %v; want the package", len(r.body), r.err)
	}
	if n := m.count(slowDeb); n != 1 {
		t.Errorf("the mirror got %d requests, want 1", n)
	}
	if st := stats(t, p); st.Hits != 1 || st.Misses != 0 {
		t.Errorf("Stats() = %+v, want 1 hit, 0 misses", st)
	}
}

// A prefetched file whose content does not have the index's sha256 is
// neither stored nor indexed, so never served from the cache; its
// client's own request goes upstream, as without a prefetch.
func TestPrefetchWrongDigestNotServed(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	before := cacheFiles(t, c)
	wrong := digestOf([]byte("another package"))
	st := p.Prefetch(t.Context(), []File{{URL: m.url(debPath), Digest: wrong}}, 1)
	if st != (PrefetchStats{Failed: 1}) {
		t.Errorf("Prefetch() = %+v, want 1 failed", st)
	}
	if res := indexed(t, p, c, m.url(debPath)); res != nil {
		t.Fatalf("a package of the wrong digest is indexed: %+v", res)
	}
	if diff := cmp.Diff(before, cacheFiles(t, c)); diff != "" {
		t.Errorf("the cache changed (-before +after):\n%s", diff)
	}
	// A locked session refuses what the index does not list, and the
	// prefetch left nothing that would bypass that.
	s := startSession(t, p, Hooks{Check: func(_ string, d cache.Digest) error {
		if d != "" && d != wrong {
			return errors.New("not the locked file")
		}
		return nil
	}})
	if _, _, err := get(t, sessionClient(t, s), http.MethodGet, m.url(debPath)); err == nil {
		t.Errorf("a locked session served a package of another digest")
	}
	if n := m.count(debPath); n != 2 {
		t.Errorf("the mirror got %d requests, want 2 (the prefetch, the client)", n)
	}
}

// Cancelling stops the downloads in flight and the files not started,
// and leaves nothing of them in the cache.
func TestPrefetchCancel(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p := startProxy(t, c)
	before := cacheFiles(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	files := []File{{URL: m.url(slowDeb), Digest: digestOf(m.files[slowDeb])}}
	files = append(files, cFiles(m)...)
	done := make(chan PrefetchStats)
	go func() { done <- p.Prefetch(ctx, files, 1) }()
	m.waitSlow(t)
	cancel()
	var st PrefetchStats
	select {
	case st = <-done:
	case <-time.After(testTimeout):
		t.Fatal("Prefetch did not return once cancelled")
	}
	if st != (PrefetchStats{Skipped: 6}) {
		t.Errorf("Prefetch() = %+v, want 6 skipped", st)
	}
	for _, f := range files {
		if res := indexed(t, p, c, f.URL); res != nil {
			t.Errorf("%s indexed after cancel", f.URL)
		}
	}
	if diff := cmp.Diff(before, cacheFiles(t, c)); diff != "" {
		t.Errorf("the cache changed (-before +after):\n%s", diff)
	}
	for _, f := range files[1:] {
		if n := m.count(mustParse(t, f.URL).Path); n != 0 {
			t.Errorf("%s fetched after cancel", f.URL)
		}
	}
}

// A proxy that closes ends its prefetches.
func TestPrefetchEndsWithProxy(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	p, err := Start(t.Context(), Options{Store: c, Actions: c.Actions()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan PrefetchStats)
	go func() {
		done <- p.Prefetch(t.Context(), []File{{URL: m.url(slowDeb), Digest: digestOf(m.files[slowDeb])}}, 1)
	}()
	m.waitSlow(t)
	go p.Close()
	select {
	case st := <-done:
		if st.Fetched != 0 {
			t.Errorf("Prefetch() = %+v, want nothing fetched", st)
		}
	case <-time.After(testTimeout):
		t.Fatal("Prefetch did not return once the proxy closed")
	}
}

// cacheFiles lists the regular files under c's directory, blobs,
// index entries and temporary files alike, but for lock files.
func cacheFiles(t *testing.T, c *local.Cache) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(c.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "locks" {
			return filepath.SkipDir // lock files stay
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A file prefetched as apt spells it (%2b) is a hit for debootstrap's
// wget, which sends the "+" as it is, and the other way round.
func TestPrefetchBothSpellings(t *testing.T) {
	m := newMirror(t)
	plus := "/pool/main/p/plus_1.0+deb12u1_amd64.deb"
	m.files[plus] = content(40, 50<<10)
	c := newCache(t)
	p := startProxy(t, c)
	escaped := m.url(strings.Replace(plus, "+", "%2b", 1))
	if st := p.Prefetch(t.Context(), []File{{URL: escaped, Digest: digestOf(m.files[plus])}}, 1); st.Fetched != 1 {
		t.Fatalf("Prefetch() = %+v, want 1 fetched", st)
	}
	client := proxyClient(t, p)
	for _, u := range []string{m.url(plus), escaped} {
		_, body := mustGet(t, client, http.MethodGet, u, http.StatusOK)
		if digestOf(body) != digestOf(m.files[plus]) {
			t.Errorf("GET %s: other content", u)
		}
	}
	if n := m.count(plus); n != 1 {
		t.Errorf("the mirror got %d requests, want 1 (the prefetch)", n)
	}
	if st := stats(t, p); st.Hits != 2 {
		t.Errorf("Stats() = %+v, want 2 hits", st)
	}
}

// stallingStore holds every Put, once it has read the whole package,
// until release is closed: a store whose syncs take long.
type stallingStore struct {
	*local.Cache
	release chan struct{}
}

func (s stallingStore) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	<-s.release
	return s.Cache.Put(ctx, bytes.NewReader(b), want)
}

// A client of a miss has its package, and its connection back, before
// the store commits it: the store's syncs are not on the path of a
// client that fetches one package after another. A second request for
// the package meanwhile waits for the index and is a hit.
func TestMissServedBeforeStored(t *testing.T) {
	m := newMirror(t)
	c := newCache(t)
	s := stallingStore{Cache: c, release: make(chan struct{})}
	p := startProxyOpts(t, Options{Store: s, Actions: c.Actions()})
	defer close(s.release)
	client := proxyClient(t, p)
	_, body := mustGet(t, client, http.MethodGet, m.url(debPath), http.StatusOK) // the store is stalled
	if !bytes.Equal(body, m.files[debPath]) {
		t.Fatalf("GET: %d bytes, want the mirror's %d", len(body), len(m.files[debPath]))
	}
	// The same connection serves the next request at once.
	mustGet(t, client, http.MethodGet, m.url(inRelease), http.StatusOK)

	got := make(chan []byte)
	go func() {
		_, body, _ := get(t, client, http.MethodGet, m.url(debPath))
		got <- body
	}()
	poll(t, "the second request to wait", func() bool { return p.inFlight() == 2 })
	select {
	case <-got:
		t.Fatal("the second request did not wait for the package to be stored")
	case <-time.After(50 * time.Millisecond):
	}
	s.release <- struct{}{}
	if b := <-got; !bytes.Equal(b, m.files[debPath]) {
		t.Fatalf("second GET: %d bytes, want the package", len(b))
	}
	if n := m.count(debPath); n != 1 {
		t.Errorf("the mirror got %d requests, want 1", n)
	}
	if st := stats(t, p); st.Hits != 1 || st.Misses != 1 || st.Stored != 1 {
		t.Errorf("Stats() = %+v, want 1 hit, 1 miss, 1 stored", st)
	}
}
