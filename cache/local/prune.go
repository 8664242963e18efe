package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// PruneOptions says what Prune keeps.
type PruneOptions struct {
	// MaxSize is the most bytes of blobs and unpacked trees to keep; 0
	// means no limit. Least recently used trees go first (they are only
	// ever a faster way to a blob that stays), then least recently used
	// actions, until the trees and the blobs still referenced fit.
	MaxSize int64
	// MaxAge removes actions created longer ago; 0 means no limit.
	MaxAge time.Duration
	// Now is the time ages are measured from; zero means time.Now().
	Now time.Time
	// Grace keeps unreferenced blobs and temporary files younger than this,
	// which may belong to a step still being recorded; 0 means DefaultGrace
	// and a negative value keeps none.
	Grace time.Duration
}

// PruneReport is what Prune removed and what is left.
type PruneReport struct {
	RemovedActions   int
	RemovedBlobs     int
	FreedBytes       int64
	RemainingActions int
	RemainingBlobs   int
	RemainingBytes   int64
	// RemovedLocks counts the per-key lock files removed: free ones whose
	// key has no action.
	RemovedLocks int
	// RemovedTempFiles counts the entries of tmp/ removed: leftovers of
	// writers that crashed or were killed.
	RemovedTempFiles int
	// RemovedTrees and RemainingTrees count the unpacked trees (see
	// UseTree); their bytes are part of FreedBytes and RemainingBytes.
	RemovedTrees   int
	RemainingTrees int
}

// Prune removes undecodable actions, actions older than MaxAge, then least
// recently used actions (last hit by Get, or written) until the blobs they
// reference fit in MaxSize, then every blob no action references. It holds
// the cache-wide lock exclusively, so writers in other processes wait.
//
// It also removes the temporary files older than Grace (every writer holds
// the cache-wide lock shared while its temporary file exists, so those are
// leftovers of a crashed or killed process; the age is a second safeguard)
// and the lock files of keys that have no action, unless a process holds
// them (see Actions.Lock).
//
// Unpacked trees (see UseTree) count against MaxSize and go before any
// action, least recently used first; a tree also goes when its blob does,
// and an incomplete one (a crash while unpacking) always. A tree in use
// by a step stays.
func (c *Cache) Prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	var rep PruneReport
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	grace := opts.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	young := func(t time.Time) bool { return grace > 0 && t.After(now.Add(-grace)) }

	unlock, err := c.gcExclusive(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	defer unlock()

	acts, err := c.scanActions(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	blobs, err := c.scanBlobs(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	trees, err := c.scanTrees(ctx)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	size := make(map[cache.Digest]int64, len(blobs))
	keep := map[cache.Digest]bool{} // young blobs, kept whatever refers to them
	for _, b := range blobs {
		size[b.digest] = b.size
		if young(b.mtime) {
			keep[b.digest] = true
		}
	}

	// Decide which actions go; count references of the others.
	refCount := map[cache.Digest]int{}
	var live []action
	var drop []action
	for _, a := range acts {
		if a.rec == nil || opts.MaxAge > 0 && a.rec.Result.Created.Before(now.Add(-opts.MaxAge)) {
			drop = append(drop, a)
			continue
		}
		live = append(live, a)
		for _, d := range record.Refs(&a.rec.Result) {
			refCount[d]++
		}
	}
	if opts.MaxSize > 0 {
		var total int64
		for d, n := range size {
			if refCount[d] > 0 || keep[d] {
				total += n
			}
		}
		// Trees first, least recently used first.
		for _, t := range trees {
			total += t.bytes
		}
		slices.SortFunc(trees, func(x, y tree) int {
			return cmp.Or(x.used.Compare(y.used), strings.Compare(string(x.digest), string(y.digest)))
		})
		var kept []tree
		for i, t := range trees {
			if total <= opts.MaxSize {
				kept = append(kept, trees[i:]...)
				break
			}
			removed, err := c.removeTree(t.digest)
			if err != nil {
				return rep, fmt.Errorf("prune: %w", err)
			}
			if !removed {
				kept = append(kept, t)
				continue
			}
			total -= t.bytes
			rep.RemovedTrees++
			rep.FreedBytes += t.bytes
		}
		trees = kept
		slices.SortFunc(live, func(x, y action) int {
			return cmp.Or(x.used.Compare(y.used), x.rec.Result.Created.Compare(y.rec.Result.Created), strings.Compare(x.key, y.key))
		})
		for total > opts.MaxSize && len(live) > 0 {
			a := live[0]
			live = live[1:]
			drop = append(drop, a)
			for _, d := range record.Refs(&a.rec.Result) {
				if refCount[d]--; refCount[d] == 0 && !keep[d] {
					total -= size[d]
				}
			}
		}
	}
	for _, a := range drop {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		if err := os.Remove(a.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("prune: %w", err)
		}
		rep.RemovedActions++
	}
	rep.RemainingActions = len(live)

	// Collect garbage: blobs no kept action refers to, the trees of blobs
	// gone (or never kept) and incomplete trees.
	blobKept := map[cache.Digest]bool{}
	for _, b := range blobs {
		if refCount[b.digest] > 0 || keep[b.digest] {
			rep.RemainingBlobs++
			rep.RemainingBytes += b.size
			blobKept[b.digest] = true
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		if err := os.Remove(b.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("prune: %w", err)
		}
		rep.RemovedBlobs++
		rep.FreedBytes += b.size
	}
	for _, t := range trees {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		if t.complete && blobKept[t.digest] {
			rep.RemainingTrees++
			rep.RemainingBytes += t.bytes
			continue
		}
		removed, err := c.removeTree(t.digest)
		if err != nil {
			return rep, fmt.Errorf("prune: %w", err)
		}
		if !removed { // in use, or being unpacked
			rep.RemainingTrees++
			rep.RemainingBytes += t.bytes
			continue
		}
		rep.RemovedTrees++
		rep.FreedBytes += t.bytes
	}
	if rep.RemovedTempFiles, err = c.cleanTmp(ctx, young); err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	if rep.RemovedLocks, err = c.cleanLocks(ctx); err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	if _, err = c.cleanVerified(ctx); err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	return rep, nil
}

// cleanTmp removes the entries of tmp/ that are not young and returns how
// many it removed. The caller holds the cache-wide lock exclusively.
func (c *Cache) cleanTmp(ctx context.Context, young func(time.Time) bool) (int, error) {
	ents, err := os.ReadDir(c.tmpDir())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || young(fi.ModTime()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := os.RemoveAll(filepath.Join(c.tmpDir(), e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// cleanLocks removes the free lock files of keys without an action file
// and returns how many it removed. The caller holds the cache-wide lock
// exclusively, so no action is recorded meanwhile.
func (c *Cache) cleanLocks(ctx context.Context) (int, error) {
	ents, err := os.ReadDir(c.locksDir())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		key, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || !e.Type().IsRegular() || record.CheckKey(key) != nil {
			continue // .gc, or not ours
		}
		if _, err := os.Lstat(c.actionPath(key)); !errors.Is(err, fs.ErrNotExist) {
			continue // cached (or unknown): the lock stays
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		removed, err := removeFreeLock(filepath.Join(c.locksDir(), e.Name()))
		if err != nil {
			return n, err
		}
		if removed {
			n++
		}
	}
	return n, nil
}

// removeFreeLock removes the lock file at path unless someone holds it. It
// takes the lock without waiting and unlinks the file while holding it, so
// that a process that opened the file before and locks it afterwards sees
// that it is gone (lockFile checks) instead of holding a lock nobody else
// can see.
func removeFreeLock(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close() // unlocks
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil // held: in use
	}
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}
