package tiered

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/imsbuild/imsbuild/cache"
)

// Put stores r in the local cache.
func (c *Cache) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	return c.local.Put(ctx, r, want)
}

// PutFile stores the file at path in the local cache.
func (c *Cache) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
	return c.local.PutFile(ctx, path)
}

// Stat returns the size of d from the local cache, else from the remote that
// holds it, without downloading it.
func (c *Cache) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	n, err := c.local.Stat(ctx, d)
	if err == nil || !errors.Is(err, cache.ErrNotFound) || !d.Valid() {
		return n, err
	}
	for _, r := range c.candidates(d) {
		n, rerr := r.Stat(ctx, d)
		if rerr == nil {
			return n, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("stat blob %s: %w", d, context.Cause(ctx))
		}
		if !errors.Is(rerr, cache.ErrNotFound) {
			c.warn(fmt.Errorf("cache %s: %w", r.Name(), rerr))
		}
	}
	return 0, err
}

// Open returns blob d from the local cache, downloading it first when only a
// remote has it.
func (c *Cache) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	rc, err := c.local.Open(ctx, d)
	if err == nil || !errors.Is(err, cache.ErrNotFound) || !d.Valid() {
		return rc, err
	}
	if err := c.fetch(ctx, d); err != nil {
		return nil, err
	}
	return c.local.Open(ctx, d)
}

// Materialize puts blob d at dst from the local cache, downloading it first
// when only a remote has it, or when the local copy was corrupt (the local
// cache dropped it): a good remote copy replaces it.
func (c *Cache) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	return c.withFetch(ctx, d, func() (bool, error) { return false, c.local.Materialize(ctx, d, dst, readOnly) })
}

// UseFile calls fn with the path of blob d in the local cache (see
// local.Cache.UseFile), downloading it first like Materialize. An error of
// fn is returned as it is, never taken for a missing blob.
func (c *Cache) UseFile(ctx context.Context, d cache.Digest, fn func(path string) error) error {
	return c.withFetch(ctx, d, func() (bool, error) {
		ran := false
		err := c.local.UseFile(ctx, d, func(p string) error { ran = true; return fn(p) })
		return ran, err
	})
}

// withFetch runs use, which reads blob d from the local cache; when the
// local cache lacks d or found it corrupt (and dropped it), it downloads d
// from a remote and runs use again. use reports whether its error is final
// whatever it wraps.
func (c *Cache) withFetch(ctx context.Context, d cache.Digest, use func() (final bool, err error)) error {
	final, err := use()
	corrupt := errors.Is(err, cache.ErrCorrupt)
	if err == nil || final || !(errors.Is(err, cache.ErrNotFound) || corrupt) || !d.Valid() {
		return err
	}
	if ferr := c.fetch(ctx, d); ferr != nil {
		if corrupt && errors.Is(ferr, cache.ErrNotFound) {
			return err // no remote has it: the local corruption is the news
		}
		return ferr
	}
	_, err = use()
	return err
}

// fetch downloads d into the local cache from the first remote that has a
// good copy. Concurrent fetches of one blob share one download; a waiter
// whose context is still live retries when the download was cancelled under
// another caller's context.
func (c *Cache) fetch(ctx context.Context, d cache.Digest) error {
	for {
		_, err, shared := c.fetches.Do(string(d), func() (any, error) {
			return nil, c.download(ctx, d)
		})
		if err != nil && shared && ctx.Err() == nil &&
			(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		return err
	}
}

// download copies d from a remote into the local cache; the local cache
// verifies the digest and keeps nothing on mismatch. A copy that is corrupt
// in every remote that has it is cache.ErrCorrupt; one that no remote has
// is cache.ErrNotFound.
func (c *Cache) download(ctx context.Context, d cache.Digest) error {
	if _, err := c.local.Stat(ctx, d); err == nil {
		return nil // another fetch got it meanwhile
	}
	var corrupt, other error
	for _, r := range c.candidates(d) {
		n, err := c.downloadFrom(ctx, r, d)
		if err == nil {
			c.stats.blobsDown.Add(1)
			c.stats.bytesDown.Add(n)
			c.opts.logger.DebugContext(ctx, "downloaded blob", "digest", d, "cache", r.Name(), "bytes", n)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fetch blob %s from %s: %w", d, r.Name(), context.Cause(ctx))
		}
		switch {
		case errors.Is(err, cache.ErrCorrupt):
			c.opts.logger.DebugContext(ctx, "corrupt remote blob", "digest", d, "cache", r.Name(), "err", err)
			if corrupt == nil {
				corrupt = fmt.Errorf("fetch blob %s from %s: %w", d, r.Name(), err)
			}
		case errors.Is(err, cache.ErrNotFound):
		default:
			if other == nil {
				other = fmt.Errorf("fetch blob %s from %s: %w", d, r.Name(), err)
			}
		}
	}
	switch {
	case corrupt != nil:
		return corrupt
	case other != nil:
		return other
	}
	return fmt.Errorf("fetch blob %s: %w", d, cache.ErrNotFound)
}

func (c *Cache) downloadFrom(ctx context.Context, r Remote, d cache.Digest) (int64, error) {
	rc, err := r.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	_, n, err := c.local.Put(ctx, rc, d)
	return n, err
}
