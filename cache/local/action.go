package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// Actions is the action cache of a Cache.
type Actions struct{ c *Cache }

// Actions returns the action cache stored beside c's blobs.
func (c *Cache) Actions() *Actions { return &Actions{c: c} }

func (a *Actions) path(key string) string {
	return filepath.Join(a.c.actionsDir(), key+".json")
}

// Get returns the result for key, or ErrNotFound when there is none, when it
// cannot be decoded (the file is removed) or when one of its blobs is
// missing or corrupt. Each blob is checked (see Check): hashed unless a
// verified record says it is unchanged since it was last hashed, so a
// corrupt blob is found before any step builds on it; it is removed with
// every action that refers to it, and the error wraps both ErrNotFound and
// ErrCorrupt. A hit marks the action as recently used for Prune.
func (a *Actions) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	p := a.path(key)
	rec, err := readAction(p)
	if errors.Is(err, record.ErrUndecodable) {
		_ = os.Remove(p)
		return nil, fmt.Errorf("get action %s: %w: %w", key, err, cache.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	if err := a.c.checkRefs(ctx, &rec.Result); err != nil {
		if errors.Is(err, cache.ErrCorrupt) {
			// Dropped with its blob: a miss, so the step is built again.
			return nil, fmt.Errorf("get action %s: %w: %w", key, err, cache.ErrNotFound)
		}
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	now := time.Now()
	_ = os.Chtimes(p, now, now) // last used, for Prune; best effort
	return &rec.Result, nil
}

// Put records res and the preimage of key atomically. It fails when an
// output or log blob of res is not in the store.
func (a *Actions) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if res == nil {
		return fmt.Errorf("put action %s: nil result", key)
	}
	rec := record.NewAction(res, preimage)
	data, err := record.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	unlock, err := a.c.gcShared(ctx)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	defer unlock()
	if err := a.c.checkBlobs(ctx, &rec.Result); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := a.c.writeFile(a.path(key), data); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	return nil
}

// Lock takes the exclusive lock of key, shared with other processes, waiting
// until it is free or ctx is done. Its file, locks/<key>.lock, is created on
// demand and removed by Prune once it is free and key has no action.
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("lock action: %w", err)
	}
	return lockFile(ctx, filepath.Join(a.c.locksDir(), key+".lock"), false)
}

// LastKey returns the key and preimage last recorded for step, or ErrNotFound.
func (a *Actions) LastKey(ctx context.Context, step string) (string, []byte, error) {
	p, err := a.stepPath(step)
	if err != nil {
		return "", nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, fmt.Errorf("last key of %s: %w", step, cache.ErrNotFound)
	}
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w", step, err)
	}
	key, preimage, err := record.DecodeStep(data, step)
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w: %w", step, err, cache.ErrNotFound)
	}
	return key, preimage, nil
}

// SetLastKey records key and its preimage as the newest seen for step.
func (a *Actions) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	p, err := a.stepPath(step)
	if err != nil {
		return err
	}
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	data, err := record.Marshal(record.NewStep(step, key, preimage))
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil // unchanged: a no-op build writes (and fsyncs) nothing
	}
	// Like every write through tmp/, hold the cache-wide lock shared, so
	// that Prune never takes the temp file for a crash's leftover.
	unlock, err := a.c.gcShared(ctx)
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	defer unlock()
	if err := a.c.writeFile(p, data); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	return nil
}

// stepPath returns the file of step's record (see record.StepFile).
func (a *Actions) stepPath(step string) (string, error) {
	name, err := record.StepFile(step)
	if err != nil {
		return "", err
	}
	return filepath.Join(a.c.stepsDir(), name), nil
}

// readAction reads and decodes an action file; missing is ErrNotFound.
func readAction(p string) (*record.Action, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return record.DecodeAction(data)
}

// checkRefs checks every blob of res (see Check) and reports the first one
// that is missing or corrupt.
func (c *Cache) checkRefs(ctx context.Context, res *cache.ActionResult) error {
	for _, d := range record.Refs(res) {
		if err := c.Check(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// checkBlobs reports the first blob of res that is not in the store.
func (c *Cache) checkBlobs(ctx context.Context, res *cache.ActionResult) error {
	for _, d := range record.Refs(res) {
		if _, err := c.Stat(ctx, d); err != nil {
			return err
		}
	}
	return nil
}
