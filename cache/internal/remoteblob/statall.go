package remoteblob

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/imsbuild/imsbuild/cache"
)

// StatConcurrency bounds the parallel HEADs of one StatAll.
const StatConcurrency = 8

// StatAll HEADs every blob in ds, StatConcurrency at a time, and returns
// their sizes, or an error wrapping cache.ErrNotFound when one is missing.
// A cancelled ctx is reported as its cause.
func (s *Store) StatAll(ctx context.Context, ds []cache.Digest) (map[cache.Digest]int64, error) {
	var mu sync.Mutex
	sizes := make(map[cache.Digest]int64, len(ds))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(StatConcurrency)
	for _, d := range ds {
		g.Go(func() error {
			n, err := s.Stat(gctx, d)
			if err != nil {
				return err
			}
			mu.Lock()
			sizes[d] = n
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	if err != nil && !errors.Is(err, cache.ErrNotFound) && ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	if err != nil {
		return nil, err
	}
	return sizes, nil
}
