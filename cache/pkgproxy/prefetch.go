package pkgproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/imsbuild/imsbuild/cache"
)

// DefaultPrefetchConns is the number of parallel downloads of Prefetch
// when it is given none: enough to hide the latency of one package at a
// time (debootstrap's wget, apt's one connection per host) without
// crowding a mirror.
const DefaultPrefetchConns = 6

// maxPrefetchConns bounds the parallel downloads of Prefetch.
const maxPrefetchConns = 16

// File is a package file to prefetch: its http:// URL and the sha256 its
// repository's index gives it.
type File struct {
	URL    string
	Digest cache.Digest // "sha256:<hex>"
}

// PrefetchStats counts what a Prefetch did.
type PrefetchStats struct {
	Fetched int   // files downloaded and cached
	Cached  int   // files already in the cache
	Failed  int   // downloads that failed or did not match their digest
	Skipped int   // files that are no cacheable package URL, and those left when ctx ended
	Bytes   int64 // bytes fetched
}

// Prefetch downloads files into the cache, conns at a time (0 is
// DefaultPrefetchConns), ahead of the clients that will ask for them: a
// package request of any session for a file being prefetched waits for
// that download and is then served from the cache. Each file is stored
// only when its content has its Digest, so a prefetched file that does
// not match is never indexed and never served; its client's request
// fetches it from upstream as usual. Prefetch returns when every file is
// done or ctx or the proxy ended, which stops the downloads in flight and
// stores nothing of them. A failed file is no error: the build fetches it
// itself.
func (p *Proxy) Prefetch(ctx context.Context, files []File, conns int) PrefetchStats {
	if conns <= 0 {
		conns = DefaultPrefetchConns
	}
	conns = min(conns, maxPrefetchConns)
	// Close ends the downloads (its abort) and waits for them.
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return PrefetchStats{Skipped: len(files)}
	}
	p.prefetches.Add(1)
	p.mu.Unlock()
	defer p.prefetches.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.life, cancel)()

	var (
		mu    sync.Mutex
		st    PrefetchStats
		wg    sync.WaitGroup
		queue = make(chan File)
	)
	count := func(f func(*PrefetchStats)) {
		mu.Lock()
		f(&st)
		mu.Unlock()
	}
	for range min(conns, len(files)) {
		wg.Go(func() {
			for f := range queue {
				n, cached, err := p.prefetchOne(ctx, f)
				count(func(s *PrefetchStats) {
					switch {
					case errors.Is(err, errNotPackage) || (err != nil && ctx.Err() != nil):
						s.Skipped++
					case err != nil:
						s.Failed++
						p.log.Debug("pkgproxy prefetch", "url", f.URL, "err", err)
					case cached:
						s.Cached++
					default:
						s.Fetched++
						s.Bytes += n
					}
				})
			}
		})
	}
	left := len(files)
	for _, f := range files {
		select {
		case queue <- f:
			left--
			continue
		case <-ctx.Done():
		}
		break
	}
	close(queue)
	wg.Wait()
	st.Skipped += left
	return st
}

// errNotPackage is a prefetch of no cacheable package URL.
var errNotPackage = errors.New("not a cacheable package URL")

// prefetchOne fetches f into the cache unless it is there, and reports
// the bytes fetched and whether it was there.
func (p *Proxy) prefetchOne(ctx context.Context, f File) (int64, bool, error) {
	u, err := url.Parse(f.URL)
	if err != nil {
		return 0, false, errNotPackage
	}
	canon, ok := packageURL(http.MethodGet, u)
	if !ok || !f.Digest.Valid() {
		return 0, false, errNotPackage
	}
	key, preimage := indexKey(canon)
	// apt asks for pool/a/a_1%2b2_all.deb, debootstrap's wget for
	// pool/a/a_1+2_all.deb: the file is indexed under both spellings.
	keys := [][2]string{{key, string(preimage)}}
	plain := *u
	plain.RawPath = "" // Go's escaping of the path: a "+" stays a "+"
	if alt, ok := packageURL(http.MethodGet, &plain); ok && alt != canon {
		k, pre := indexKey(alt)
		keys = append(keys, [2]string{k, string(pre)})
	}
	done, first := p.startPrefetch(keys)
	if !first {
		return 0, true, nil // another prefetch has it
	}
	defer done()
	cached := true
	for _, k := range keys {
		cached = cached && p.cached(ctx, k[0])
	}
	if cached {
		return 0, true, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, canon, nil)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("User-Agent", "") // no Go default
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, false, unwrapURLError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !identity(resp.Header) {
		return 0, false, fmt.Errorf("GET %s: %s", canon, resp.Status)
	}
	// Put with the wanted digest stores nothing unless the whole body has
	// it; a short body or a cancelled ctx stores nothing either.
	d, n, err := p.store.Put(ctx, countingReader{resp.Body, &p.fromUpstream}, f.Digest)
	if err != nil {
		return 0, false, fmt.Errorf("GET %s: %w", canon, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return 0, false, fmt.Errorf("GET %s: got %d of %d bytes", canon, n, resp.ContentLength)
	}
	for _, k := range keys {
		if !p.index(ctx, k[0], []byte(k[1]), d, n) {
			return 0, false, fmt.Errorf("GET %s: not indexed", canon)
		}
	}
	return n, false, nil
}

// cached reports whether key's blob is in the cache whole (as serveCached
// would find it).
func (p *Proxy) cached(ctx context.Context, key string) bool {
	if p.isBad(key) {
		return false
	}
	res, err := p.actions.Get(ctx, key)
	if err != nil {
		return false
	}
	out, ok := res.Outputs[output]
	if !ok {
		return false
	}
	size, err := p.store.Stat(ctx, out.Digest)
	return err == nil && size == out.Size
}

// startPrefetch marks keys (key, preimage) as being prefetched, unless
// one already is (first is false); done ends the mark and wakes the
// requests waiting.
func (p *Proxy) startPrefetch(keys [][2]string) (done func(), first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		if _, ok := p.prefetching[k[0]]; ok {
			return nil, false
		}
	}
	ch := make(chan struct{})
	for _, k := range keys {
		p.prefetching[k[0]] = ch
	}
	return func() {
		p.mu.Lock()
		for _, k := range keys {
			delete(p.prefetching, k[0])
		}
		p.mu.Unlock()
		close(ch)
	}, true
}

// awaitPrefetch waits while key is being prefetched, or until ctx ends.
func (p *Proxy) awaitPrefetch(ctx context.Context, key string) {
	p.mu.Lock()
	ch := p.prefetching[key]
	p.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// countingReader adds what it reads to n.
type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n interface{ Add(int64) int64 }
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
