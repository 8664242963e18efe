package tiered

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
)

// Remote is a remote cache: *s3.Cache and *oci.Cache implement it.
type Remote interface {
	cache.Store
	// Actions returns the remote's action cache. Its Get must report a
	// result whose blobs are missing as cache.ErrNotFound.
	Actions() cache.ActionCache
	// Name is the remote's URL, for logs and warnings.
	Name() string
}

// concurrency bounds the parallel existence checks of a write-through.
const concurrency = 8

// uploadConcurrency bounds the parallel blob uploads of a write-through
// (each upload is itself parallel in parts).
const uploadConcurrency = 2

// Option configures a Cache.
type Option func(*options)

type options struct {
	logger    *slog.Logger
	onWarning func(error)
}

// WithLogger logs cache decisions (remote hits and misses) to l at debug
// level; default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithOnWarning receives the errors that do not fail a build: a failed
// write-through, an unreachable remote. Default: logged at warn level.
func WithOnWarning(f func(error)) Option {
	return func(o *options) {
		if f != nil {
			o.onWarning = f
		}
	}
}

// Cache is the local cache with remote caches behind it. It is safe for
// concurrent use.
type Cache struct {
	local   *local.Cache
	readers []Remote // from, then to unless it is one of them
	to      Remote
	opts    options

	mu      sync.Mutex
	holders map[cache.Digest]Remote // which remote had a blob of a remote hit
	fetches singleflight.Group

	stats counters
}

var (
	_ cache.Store              = (*Cache)(nil)
	_ cache.LockingActionCache = (*Actions)(nil)
)

// New returns the cache that reads local, then from (in order) and to, and
// writes local and through to to. from may be empty and to nil.
func New(local *local.Cache, from []Remote, to Remote, opts ...Option) *Cache {
	c := &Cache{
		local:   local,
		to:      to,
		holders: map[cache.Digest]Remote{},
		opts:    options{logger: slog.Default()},
	}
	for _, o := range opts {
		o(&c.opts)
	}
	seen := map[string]bool{}
	for _, r := range append(append([]Remote(nil), from...), to) {
		if r == nil || seen[r.Name()] {
			continue
		}
		seen[r.Name()] = true
		c.readers = append(c.readers, r)
	}
	return c
}

// Local returns the local cache.
func (c *Cache) Local() *local.Cache { return c.local }

// BlobPath returns the path blob d has in the local cache (which need not
// exist: a blob only a remote holds is not there until Open fetches it). It
// keeps the local cache's plain files visible through the tiered cache, so
// an OCI push sends a local blob file as it is (zero-copy) instead of
// reading it through a verifying reader.
func (c *Cache) BlobPath(d cache.Digest) string { return c.local.BlobPath(d) }

// warn reports an error that does not fail the build.
func (c *Cache) warn(err error) {
	if c.opts.onWarning != nil {
		c.opts.onWarning(err)
		return
	}
	c.opts.logger.Warn("remote cache", "err", err)
}

// Stats counts what moved between the local cache and the remotes.
type Stats struct {
	RemoteHits      int64 // actions found in a remote
	BlobsDownloaded int64
	BytesDownloaded int64
	BlobsUploaded   int64
	BytesUploaded   int64
	ActionsUploaded int64
}

type counters struct {
	remoteHits, blobsDown, bytesDown, blobsUp, bytesUp, actionsUp atomic.Int64
}

// Stats returns the counts so far.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		RemoteHits:      s.remoteHits.Load(),
		BlobsDownloaded: s.blobsDown.Load(),
		BytesDownloaded: s.bytesDown.Load(),
		BlobsUploaded:   s.blobsUp.Load(),
		BytesUploaded:   s.bytesUp.Load(),
		ActionsUploaded: s.actionsUp.Load(),
	}
}

// remember records r as the holder of every blob of res.
func (c *Cache) remember(r Remote, res *cache.ActionResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range res.Outputs {
		c.holders[o.Digest] = r
	}
	if res.Log != "" {
		c.holders[res.Log] = r
	}
}

// candidates returns the remotes to ask for d: its holder first.
func (c *Cache) candidates(d cache.Digest) []Remote {
	c.mu.Lock()
	h := c.holders[d]
	c.mu.Unlock()
	if h == nil {
		return c.readers
	}
	rs := []Remote{h}
	for _, r := range c.readers {
		if r != h {
			rs = append(rs, r)
		}
	}
	return rs
}
