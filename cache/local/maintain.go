package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
	"github.com/imsbuild/imsbuild/cache/internal/verify"
	"github.com/imsbuild/imsbuild/internal/stamp"
)

// DefaultGrace is how long Prune keeps unreferenced blobs and temporary
// files, which may belong to a step still running in another process.
const DefaultGrace = time.Hour

// action is one action file as found by a scan.
type action struct {
	key  string
	path string
	used time.Time      // file mtime: written or last hit
	rec  *record.Action // nil when undecodable
	err  error
}

// scanActions reads every action file.
func (c *Cache) scanActions(ctx context.Context) ([]action, error) {
	ents, err := os.ReadDir(c.actionsDir())
	if err != nil {
		return nil, fmt.Errorf("scan actions: %w", err)
	}
	var out []action
	for _, e := range ents {
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || record.CheckKey(key) != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		a := action{key: key, path: filepath.Join(c.actionsDir(), e.Name())}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("scan actions: %w", err)
		}
		a.used = fi.ModTime()
		a.rec, a.err = readAction(a.path, a.key)
		if errors.Is(a.err, cache.ErrNotFound) {
			continue
		}
		if a.err != nil && !errors.Is(a.err, record.ErrUndecodable) {
			return nil, fmt.Errorf("scan actions: %s: %w", a.path, a.err)
		}
		out = append(out, a)
	}
	return out, nil
}

// blob is one blob file as found by a scan.
type blob struct {
	digest cache.Digest
	path   string
	size   int64
	mtime  time.Time
}

// scanBlobs lists every blob file whose name is a digest.
func (c *Cache) scanBlobs(ctx context.Context) ([]blob, error) {
	shards, err := os.ReadDir(c.blobsDir())
	if err != nil {
		return nil, fmt.Errorf("scan blobs: %w", err)
	}
	var out []blob
	for _, s := range shards {
		if !s.IsDir() || len(s.Name()) != 2 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(c.blobsDir(), s.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("scan blobs: %w", err)
		}
		for _, e := range ents {
			d := cache.Digest("sha256:" + e.Name())
			if !d.Valid() || !strings.HasPrefix(e.Name(), s.Name()) || !e.Type().IsRegular() {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("scan blobs: %w", err)
			}
			out = append(out, blob{digest: d, path: filepath.Join(dir, e.Name()), size: fi.Size(), mtime: fi.ModTime()})
		}
	}
	return out, nil
}

// List returns every decodable action with its key and preimage, oldest
// first by creation time.
func (c *Cache) List(ctx context.Context) ([]cache.Entry, error) {
	acts, err := c.scanActions(ctx)
	if err != nil {
		return nil, err
	}
	var out []cache.Entry
	for _, a := range acts {
		if a.rec == nil {
			continue
		}
		out = append(out, cache.Entry{Key: a.key, Result: a.rec.Result, Preimage: a.rec.Bytes()})
	}
	slices.SortFunc(out, func(x, y cache.Entry) int {
		return cmp.Or(x.Result.Created.Compare(y.Result.Created), strings.Compare(x.Key, y.Key))
	})
	return out, nil
}

// Usage returns the number and total size of blobs and the number of actions.
func (c *Cache) Usage(ctx context.Context) (blobs int, bytes int64, actions int, err error) {
	bs, err := c.scanBlobs(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, b := range bs {
		bytes += b.size
	}
	ents, err := os.ReadDir(c.actionsDir())
	if err != nil {
		return 0, 0, 0, fmt.Errorf("usage: %w", err)
	}
	for _, e := range ents {
		if key, ok := strings.CutSuffix(e.Name(), ".json"); ok && record.CheckKey(key) == nil {
			actions++
		}
	}
	return len(bs), bytes, actions, nil
}

// VerifyOptions say what Verify does besides checking.
type VerifyOptions struct {
	// Repair removes the corrupt blobs and the broken actions.
	Repair bool
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Blobs         int   // blobs checked
	Bytes         int64 // bytes hashed
	Actions       int   // actions checked
	CorruptBlobs  []cache.Digest
	BrokenActions []BrokenAction
	// Repaired is set when the corrupt blobs and broken actions were removed.
	Repaired bool
}

// BrokenAction is an action that can never be a hit.
type BrokenAction struct {
	Key    string
	Reason string
}

// String returns "key: reason".
func (b BrokenAction) String() string { return b.Key + ": " + b.Reason }

// OK reports whether nothing is wrong.
func (r VerifyReport) OK() bool { return len(r.CorruptBlobs) == 0 && len(r.BrokenActions) == 0 }

// Verify rehashes every blob and checks that every action decodes, that
// its blobs exist and are intact and that its preimage names no corrupt
// blob (a step built on a corrupt parent). With opts.Repair it removes the
// corrupt blobs and the broken actions, holding the cache-wide lock so no
// build writes meanwhile. Intact blobs are recorded as verified, so builds
// need not hash them again (see Check).
func (c *Cache) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	var rep VerifyReport
	repair := opts.Repair
	if repair {
		unlock, err := c.gcExclusive(ctx)
		if err != nil {
			return rep, fmt.Errorf("verify: %w", err)
		}
		defer unlock()
	}
	blobs, err := c.scanBlobs(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	var mu sync.Mutex
	bad := map[cache.Digest]bool{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, b := range blobs {
		g.Go(func() error {
			ok, n, err := c.verifyBlob(gctx, b, repair)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Bytes += n
			if !ok {
				bad[b.digest] = true
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Blobs = len(blobs)
	for d := range bad {
		rep.CorruptBlobs = append(rep.CorruptBlobs, d)
	}
	slices.Sort(rep.CorruptBlobs)

	acts, err := c.scanActions(ctx)
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	rep.Actions = len(acts)
	for _, a := range acts {
		if reason := c.brokenReason(ctx, a, bad); reason != "" {
			rep.BrokenActions = append(rep.BrokenActions, BrokenAction{Key: a.key, Reason: reason})
		}
	}
	if !repair {
		return rep, nil
	}
	for _, d := range rep.CorruptBlobs {
		if err := os.Remove(c.BlobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("verify: repair: %w", err)
		}
	}
	for _, b := range rep.BrokenActions {
		if err := os.Remove(filepath.Join(c.actionsDir(), b.Key+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("verify: repair: %w", err)
		}
	}
	if _, err := c.cleanVerified(ctx); err != nil {
		return rep, fmt.Errorf("verify: repair: %w", err)
	}
	rep.Repaired = true
	return rep, nil
}

// verifyBlob rehashes b, recording an intact one as verified (see Check);
// a blob removed meanwhile counts as intact. locked says the caller holds
// the cache-wide lock.
func (c *Cache) verifyBlob(ctx context.Context, b blob, locked bool) (ok bool, n int64, err error) {
	taken := c.now()
	f, err := os.Open(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, 0, fmt.Errorf("%s: %w", b.path, err)
	}
	d, n, err := verify.HashCopy(ctx, nil, f)
	if err != nil {
		return false, n, fmt.Errorf("%s: %w", b.path, err)
	}
	if d != b.digest {
		return false, n, nil
	}
	if st, ok := stamp.Of(fi); ok {
		c.remember(ctx, d, st, taken, locked)
	}
	return true, n, nil
}

// brokenReason says why a can never be a hit, or "" when it can.
func (c *Cache) brokenReason(ctx context.Context, a action, bad map[cache.Digest]bool) string {
	if a.rec == nil {
		return a.err.Error()
	}
	for _, d := range record.Refs(&a.rec.Result) {
		if bad[d] {
			return fmt.Sprintf("blob %s is corrupt", d)
		}
		if _, err := c.Stat(ctx, d); err != nil {
			return fmt.Sprintf("blob %s is missing", d)
		}
	}
	// A step keyed by a corrupt parent output may have been built from the
	// corrupt bytes: its own outputs hash fine but cannot be trusted.
	if d := refersTo(a.rec, bad); d != "" {
		return fmt.Sprintf("built from corrupt blob %s", d)
	}
	return ""
}
