package local

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// Cache is a local CAS and action cache rooted at a directory. It holds no
// state besides its path (and a clock and counter for tests), so any
// number of Cache values (in one process or several) may share a directory.
type Cache struct {
	dir    string
	now    func() time.Time // the clock of verified records; tests move it
	hashed atomic.Int64     // blobs checked by hashing; tests count them
}

var (
	_ cache.Store              = (*Cache)(nil)
	_ cache.LockingActionCache = (*Actions)(nil)
)

// Open opens (creating) the cache at dir. The directory is its owner's
// only (0700, also when an older imsbuild made it 0755): key preimages,
// step logs and images may hold secrets of the build.
func Open(dir string) (*Cache, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", dir, err)
	}
	c := &Cache{dir: abs, now: time.Now}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open cache %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return nil, fmt.Errorf("open cache %w", err)
	}
	for _, d := range []string{c.blobsDir(), c.actionsDir(), c.stepsDir(), c.locksDir(), c.tmpDir(), c.verifiedDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open cache %w", err)
		}
	}
	return c, nil
}

// hmacKeyName is the file of the cache's HMAC key, in the cache directory
// where no remote cache reads it.
const hmacKeyName = "hmac.key"

// HMACKey returns the cache's secret key for HMACs of sensitive values in
// key preimages (see engine), creating it (32 random bytes, mode 0600) on
// first use. Concurrent first uses agree: the file is linked into place,
// never replaced.
func (c *Cache) HMACKey() ([]byte, error) {
	path := filepath.Join(c.dir, hmacKeyName)
	for range 2 {
		key, err := os.ReadFile(path)
		if err == nil {
			if len(key) < 32 {
				return nil, fmt.Errorf("hmac key %s: %d bytes, want 32 or more", path, len(key))
			}
			return key, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("hmac key: %w", err)
		}
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("hmac key: %w", err)
		}
		f, err := os.CreateTemp(c.tmpDir(), "hmac-*")
		if err != nil {
			return nil, fmt.Errorf("hmac key: %w", err)
		}
		_, err = f.Write(key)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Link(f.Name(), path)
		}
		os.Remove(f.Name())
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("hmac key: %w", err)
		}
		// Another process made it first: read theirs.
	}
	return nil, fmt.Errorf("hmac key %s: cannot create or read it", path)
}

// Dir returns the absolute cache directory.
func (c *Cache) Dir() string { return c.dir }

// StatCachePath is where the treehash stat cache of this cache lives.
func (c *Cache) StatCachePath() string { return filepath.Join(c.dir, "statcache") }

// BlobPath returns the path of the blob d (which need not exist).
func (c *Cache) BlobPath(d cache.Digest) string {
	h := d.Hex()
	if len(h) < 2 {
		return filepath.Join(c.blobsDir(), "invalid", h)
	}
	return filepath.Join(c.blobsDir(), h[:2], h)
}

func (c *Cache) blobsDir() string    { return filepath.Join(c.dir, "blobs", "sha256") }
func (c *Cache) actionsDir() string  { return filepath.Join(c.dir, "actions") }
func (c *Cache) stepsDir() string    { return filepath.Join(c.dir, "steps") }
func (c *Cache) locksDir() string    { return filepath.Join(c.dir, "locks") }
func (c *Cache) tmpDir() string      { return filepath.Join(c.dir, "tmp") }
func (c *Cache) verifiedDir() string { return filepath.Join(c.dir, "verified") }
func (c *Cache) gcLockPath() string  { return filepath.Join(c.locksDir(), ".gc") }

// gcShared takes the cache-wide lock shared, for writes Prune must not
// interleave with.
func (c *Cache) gcShared(ctx context.Context) (func(), error) {
	return lockFile(ctx, c.gcLockPath(), true)
}

// gcExclusive takes the cache-wide lock exclusively, for Prune and repair.
func (c *Cache) gcExclusive(ctx context.Context) (func(), error) {
	return lockFile(ctx, c.gcLockPath(), false)
}

// lockFile takes an flock(2) lock on path, polling until it is free or ctx
// is done. Each call opens its own descriptor, so locks also exclude each
// other within one process.
//
// Prune removes free lock files (see removeFreeLock), so a lock taken on a
// file that was unlinked meanwhile would exclude nobody: lockFile checks,
// holding the lock, that path still names the locked file, and else starts
// over. Once that check passes the file stays, since removing it takes the
// lock.
func lockFile(ctx context.Context, path string, shared bool) (func(), error) {
	delay := time.Millisecond
	for {
		l := flock.New(path, flock.SetPermissions(0o644))
		try := l.TryLock
		if shared {
			try = l.TryRLock
		}
		ok, err := try()
		if err == nil && ok {
			if ok, err = stillLinked(l, path); err == nil && ok {
				return func() { _ = l.Close() }, nil // Close unlocks
			}
			if err == nil {
				_ = l.Close()
				continue // removed under us: lock the new file at once
			}
		}
		_ = l.Close() // a fresh descriptor each try
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", path, context.Cause(ctx))
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// stillLinked reports whether path names the file l has open.
func stillLinked(l *flock.Flock, path string) (bool, error) {
	held, err := l.Stat() // the open descriptor's file
	if err != nil {
		return false, err
	}
	cur, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(held, cur), nil
}

// writeFile atomically replaces path (inside the cache) with data, through a
// temp file in tmp/ so that Prune can clean up after a crash.
func (c *Cache) writeFile(path string, data []byte) error {
	f, err := atomicfile.CreateTemp(c.tmpDir(), path, 0o600)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}
