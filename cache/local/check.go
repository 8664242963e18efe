package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
	"github.com/imsbuild/imsbuild/cache/internal/verify"
	"github.com/imsbuild/imsbuild/internal/stamp"
)

// verifiedPath is the record of the last verification of blob d.
func (c *Cache) verifiedPath(d cache.Digest) string {
	return filepath.Join(c.verifiedDir(), d.Hex())
}

// The record is one line: "v1 dev ino size mtime ctime taken", where taken
// is when the stat was taken (Unix nanoseconds), or written for a blob
// whose stat was taken right after this cache wrote it.
const recordFormat = "v1 %d %d %d %d %d %d\n"

// written marks the record of a blob stat'ed right after it was committed.
// Its stat is as recent as the blob, yet the racy rule is not needed: the
// cache has just written the bytes it hashed, to a file only it knew of,
// so only a write in the very timestamp tick of the commit could hide.
const written = -1

// trusted reports whether blob d, in the state st, was verified before and
// not changed since (internal/stamp's rule, shared with treehash's stat
// cache).
func (c *Cache) trusted(d cache.Digest, st stamp.Stamp) bool {
	data, err := os.ReadFile(c.verifiedPath(d))
	if err != nil || len(data) > 256 {
		return false
	}
	var r stamp.Stamp
	var taken int64
	if n, err := fmt.Sscanf(string(data), recordFormat, &r.Dev, &r.Ino, &r.Size, &r.Mtime, &r.Ctime, &taken); err != nil || n != 6 {
		return false
	}
	return r == st && (taken == written || st.Settled(taken))
}

// remember records that blob d was intact in state st, stat'ed at taken,
// unless that is too close to its last change to be trusted later. It is
// best effort: without a record the blob is only hashed again.
func (c *Cache) remember(ctx context.Context, d cache.Digest, st stamp.Stamp, taken time.Time, locked bool) {
	if !st.Settled(taken.UnixNano()) {
		return
	}
	c.writeRecord(ctx, d, st, taken.UnixNano(), locked)
}

// rememberWritten records the blob d that the cache has just committed at
// path, so that the builds that use it next need not hash it again. The
// caller holds the cache-wide lock.
func (c *Cache) rememberWritten(ctx context.Context, d cache.Digest, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if st, ok := stamp.Of(fi); ok {
		c.writeRecord(ctx, d, st, written, true)
	}
}

// writeRecord writes the verified record of d. Like every write through
// tmp/ it holds the cache-wide lock shared, unless the caller holds it
// (locked).
func (c *Cache) writeRecord(ctx context.Context, d cache.Digest, st stamp.Stamp, taken int64, locked bool) {
	if !locked {
		unlock, err := c.gcShared(ctx)
		if err != nil {
			return
		}
		defer unlock()
	}
	// Not synced: a record lost in a crash only costs a hash, and a torn
	// one does not parse.
	f, err := os.CreateTemp(c.tmpDir(), "verified-*")
	if err != nil {
		return
	}
	_, err = fmt.Fprintf(f, recordFormat, st.Dev, st.Ino, st.Size, st.Mtime, st.Ctime, taken)
	if cerr := f.Close(); err == nil && cerr == nil {
		err = os.Rename(f.Name(), c.verifiedPath(d))
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
}

// checkOpen makes sure that f, the open blob file of d, holds d: at once
// when a verified record matches f's stat, else by hashing it (streaming,
// without moving f's offset). A corrupt blob is dropped (see dropCorrupt)
// and reported as an error wrapping cache.ErrCorrupt.
func (c *Cache) checkOpen(ctx context.Context, d cache.Digest, f *os.File) error {
	taken := c.now()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check blob %s: %w", d, err)
	}
	st, ok := stamp.Of(fi)
	if ok && c.trusted(d, st) {
		return nil
	}
	c.hashed.Add(1)
	got, _, err := verify.HashCopy(ctx, nil, io.NewSectionReader(f, 0, fi.Size()+1))
	if err != nil {
		return fmt.Errorf("check blob %s: %w", d, err)
	}
	if got != d {
		c.dropCorrupt(ctx, d, f)
		return fmt.Errorf("blob %s: content is %s (removed): %w", d, got, cache.ErrCorrupt)
	}
	if ok {
		c.remember(ctx, d, st, taken, false)
	}
	return nil
}

// Check verifies blob d: at once when it was verified before and its file
// has not changed since, else by hashing it. A corrupt blob is removed with
// the actions that refer to it, and the error wraps cache.ErrCorrupt; a
// missing one is cache.ErrNotFound.
func (c *Cache) Check(ctx context.Context, d cache.Digest) error {
	f, err := c.openBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return c.checkOpen(ctx, d, f)
}

// dropCorrupt removes the corrupt blob d, whose open file is f, and every
// action that refers to it: as an output or log, or in its preimage (a
// child keyed by a parent's output digest may have been built from the
// corrupt bytes). A blob healed meanwhile (a new file at its path) stays.
// It is best effort: what cannot be removed is still never trusted.
func (c *Cache) dropCorrupt(ctx context.Context, d cache.Digest, f *os.File) {
	unlock, err := c.gcShared(ctx)
	if err != nil {
		return
	}
	defer unlock()
	p := c.BlobPath(d)
	if held, err := f.Stat(); err == nil {
		if cur, err := os.Stat(p); err == nil && os.SameFile(held, cur) {
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(c.verifiedPath(d))
	acts, err := c.scanActions(ctx)
	if err != nil {
		return
	}
	for _, a := range acts {
		if a.rec != nil && refersTo(a.rec, map[cache.Digest]bool{d: true}) != "" {
			_ = os.Remove(a.path)
		}
	}
}

// refersTo returns the first digest of bad that rec refers to, as a blob of
// its result or in its preimage, or "".
func refersTo(rec *record.Action, bad map[cache.Digest]bool) cache.Digest {
	for _, d := range record.Refs(&rec.Result) {
		if bad[d] {
			return d
		}
	}
	pre := rec.Bytes()
	for d := range bad {
		if bytes.Contains(pre, []byte(d.Hex())) {
			return d
		}
	}
	return ""
}

// cleanVerified removes the verified records of blobs that are gone and
// returns how many it removed. The caller holds the cache-wide lock
// exclusively.
func (c *Cache) cleanVerified(ctx context.Context) (int, error) {
	ents, err := os.ReadDir(c.verifiedDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		d := cache.Digest("sha256:" + e.Name())
		if !d.Valid() {
			continue
		}
		if _, err := os.Lstat(c.BlobPath(d)); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := os.Remove(filepath.Join(c.verifiedDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
		n++
	}
	return n, nil
}
