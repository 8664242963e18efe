package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/actions"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// Actions is the action cache of a Cache (cache/internal/actions over the
// files actions/<key>.json and steps/<step>-<hash>.json) with its per-key
// locks.
//
// Get checks each blob of a result (see Check): hashed unless a verified
// record says it is unchanged since it was last hashed, so a corrupt blob
// is found before any step builds on it; it is removed with every action
// that refers to it, and the error wraps both ErrNotFound and ErrCorrupt.
// An action file that does not decode is removed. A hit marks the action as
// recently used for Prune. Put fails when a blob of the result is not in
// the store, checked under the cache-wide lock so Prune cannot remove it
// before the action is written.
type Actions struct {
	*actions.Cache
	c *Cache
}

// Actions returns the action cache stored beside c's blobs.
func (c *Cache) Actions() *Actions {
	return &Actions{Cache: actions.New(records{c}), c: c}
}

// Lock takes the exclusive lock of key, shared with other processes using
// the cache directory (see cache.Locker), waiting until it is free or ctx
// is done. Its file, locks/<key>.lock, is created on demand and removed by
// Prune once it is free and key has no action.
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("lock action: %w", err)
	}
	return lockFile(ctx, filepath.Join(a.c.locksDir(), key+".lock"), false)
}

// records is the actions.Backend of a Cache: one file per record.
type records struct{ c *Cache }

func (r records) path(kind actions.Kind, name string) (string, error) {
	if kind == actions.Action {
		return r.c.actionPath(name), nil
	}
	file, err := record.StepFile(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(r.c.stepsDir(), file), nil
}

// actionPath is the file of key's action record.
func (c *Cache) actionPath(key string) string {
	return filepath.Join(c.actionsDir(), key+".json")
}

func (r records) Get(ctx context.Context, kind actions.Kind, name string) ([]byte, error) {
	p, err := r.path(kind, name)
	if err != nil {
		return nil, err
	}
	return readRecord(p)
}

// Put writes the record through tmp/ holding the cache-wide lock shared,
// so that Prune neither takes the temp file for a crash's leftover nor
// removes a blob of res between the check and the write.
func (r records) Put(ctx context.Context, kind actions.Kind, name string, data []byte, res *cache.ActionResult) error {
	p, err := r.path(kind, name)
	if err != nil {
		return err
	}
	unlock, err := r.c.gcShared(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if res != nil {
		for _, d := range record.Refs(res) {
			if _, err := r.c.Stat(ctx, d); err != nil {
				return err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.c.writeFile(p, data)
}

// Check checks every blob (see Cache.Check) and reports the first one that
// is missing or corrupt.
func (r records) Check(ctx context.Context, refs []cache.Digest) error {
	for _, d := range refs {
		if err := r.c.Check(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (r records) Drop(ctx context.Context, key string) error {
	return os.Remove(r.c.actionPath(key))
}

// Used marks key's action as used now, for Prune; best effort.
func (r records) Used(ctx context.Context, key string) {
	now := time.Now()
	_ = os.Chtimes(r.c.actionPath(key), now, now)
}

// readRecord reads a record file, at most record.MaxSize bytes; missing is
// ErrNotFound.
func readRecord(p string) ([]byte, error) {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cache.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, record.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if len(data) > record.MaxSize {
		return nil, fmt.Errorf("read %s: %w: larger than %d bytes", p, record.ErrUndecodable, record.MaxSize)
	}
	return data, nil
}

// readAction reads and decodes the action file of key; missing is
// ErrNotFound.
func readAction(p, key string) (*record.Action, error) {
	data, err := readRecord(p)
	if err != nil {
		return nil, err
	}
	return record.DecodeAction(data, key)
}
