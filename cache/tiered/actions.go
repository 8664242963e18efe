package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// Actions is the action cache of a Cache.
type Actions struct{ c *Cache }

// Actions returns the action cache of c.
func (c *Cache) Actions() *Actions { return &Actions{c: c} }

// Get returns the local result for key, else the first remote one, without
// downloading its blobs. Remote failures are misses.
func (a *Actions) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	c := a.c
	res, err := c.local.Actions().Get(ctx, key)
	if err == nil || !errors.Is(err, cache.ErrNotFound) {
		return res, err
	}
	for _, r := range c.readers {
		res, rerr := r.Actions().Get(ctx, key)
		if rerr == nil {
			c.remember(r, res)
			c.stats.remoteHits.Add(1)
			c.opts.logger.DebugContext(ctx, "remote cache hit", "key", key, "cache", r.Name())
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("get action %s from %s: %w", key, r.Name(), context.Cause(ctx))
		}
		if errors.Is(rerr, cache.ErrNotFound) {
			c.opts.logger.DebugContext(ctx, "remote cache miss", "key", key, "cache", r.Name(), "err", rerr)
		} else {
			c.warn(fmt.Errorf("cache %s: %w", r.Name(), rerr))
		}
	}
	return nil, err
}

// Put records res locally, then writes it through to the to remote. A
// failed write-through is reported to OnWarning, not returned; only a
// cancelled ctx makes it an error.
func (a *Actions) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	c := a.c
	if err := c.local.Actions().Put(ctx, key, preimage, res); err != nil {
		return err
	}
	if c.to == nil {
		return nil
	}
	if err := c.writeThrough(ctx, key, preimage, res); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("put action %s to %s: %w", key, c.to.Name(), context.Cause(ctx))
		}
		c.warn(fmt.Errorf("put action %s to %s: %w", key, c.to.Name(), err))
	}
	return nil
}

// writeThrough uploads the blobs of res that the to remote lacks, then the
// action record.
func (c *Cache) writeThrough(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	missing, err := c.missing(ctx, c.to, record.Refs(res))
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadConcurrency)
	for _, d := range missing {
		g.Go(func() error { return c.upload(gctx, d) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := c.to.Actions().Put(ctx, key, preimage, res); err != nil {
		return err
	}
	c.stats.actionsUp.Add(1)
	return nil
}

// upload copies blob d to the to remote, which verifies it.
func (c *Cache) upload(ctx context.Context, d cache.Digest) error {
	rc, err := c.Open(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, n, err := c.to.Put(ctx, rc, d)
	if err != nil {
		return err
	}
	c.stats.blobsUp.Add(1)
	c.stats.bytesUp.Add(n)
	return nil
}

// missing returns the blobs of ds that r does not have, checking them in
// parallel.
func (c *Cache) missing(ctx context.Context, r Remote, ds []cache.Digest) ([]cache.Digest, error) {
	var mu sync.Mutex
	var out []cache.Digest
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(concurrency)
	for _, d := range ds {
		g.Go(func() error {
			_, err := r.Stat(gctx, d)
			if errors.Is(err, cache.ErrNotFound) {
				mu.Lock()
				out = append(out, d)
				mu.Unlock()
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// Lock takes the local cache's lock of key: it excludes other processes on
// this machine, not other runners sharing the remote caches (see
// cache.Locker).
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	return a.c.local.Actions().Lock(ctx, key)
}

// LastKey returns the local cache's last key of step.
func (a *Actions) LastKey(ctx context.Context, step string) (string, []byte, error) {
	return a.c.local.Actions().LastKey(ctx, step)
}

// SetLastKey records key as step's last key in the local cache.
func (a *Actions) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	return a.c.local.Actions().SetLastKey(ctx, step, key, preimage)
}
