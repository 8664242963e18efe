package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
)

// Unpacked trees: trees/<64 hex>/root is the squashfs blob <64 hex>
// unpacked, the lower layer of the overlays of customize steps built on
// it, so that only the first of them unpacks it. Nothing writes to a tree
// once it is complete: overlayfs never writes to a lower layer.
//
//	trees/<hex>/root      the tree
//	trees/<hex>/complete  the marker (treeMarker), written atomically last
//	trees/<hex>.lock      flock(2): shared while a step uses the tree,
//	                      exclusive to unpack it or remove it
//
// A tree is complete only when its marker exists and still describes it:
// the marker names the blob and records a digest of the lstat(2) of every
// entry (path, type and mode, owner, size, inode, link count, device,
// mtime and ctime). Any change made through the filesystem after the
// marker was written changes a ctime or the list of entries, so a tree
// that a crash left half unpacked (no marker), that lost or gained a file,
// or whose file was truncated, rewritten or chmodded is unpacked again.
// It does not catch what bypasses the filesystem (bit rot on the disk, an
// edit of the block device), nor, on a kernel before 6.13 (whose ctimes
// are as coarse as its clock tick), a same-size rewrite within a few
// milliseconds of the marker; and it is not a content hash: hashing
// 400 MB on every use would cost what the tree saves.

const (
	treeRootName   = "root"
	treeMarkerName = "complete"
	treeMarkerMax  = 4 << 10 // a marker is some 200 bytes
)

// treeMarker is the content of trees/<hex>/complete.
type treeMarker struct {
	Digest  cache.Digest `json:"digest"`  // the blob unpacked
	Entries int          `json:"entries"` // files, directories, links… in root, root included
	Bytes   int64        `json:"bytes"`   // disk usage (allocated blocks, hard links once)
	Stat    string       `json:"stat"`    // sha256 of every entry's lstat, see fingerprint
}

func (c *Cache) treesDir() string { return filepath.Join(c.dir, "trees") }

func (c *Cache) treeDir(d cache.Digest) string { return filepath.Join(c.treesDir(), d.Hex()) }

func (c *Cache) treeLockPath(d cache.Digest) string {
	return filepath.Join(c.treesDir(), d.Hex()+".lock")
}

// UseTree returns the unpacked tree of the squashfs blob d and a release
// function to call when done with it; the tree is read-only to the
// caller and stays (Prune keeps it) until release. When the cache has no
// complete tree of d, fill unpacks d into the empty directory it is given
// (it must verify the blob, as cache.FileUser does) and the result is
// kept for the next caller; filled reports that. Callers that need the
// same tree at once unpack it once: the others wait for the first.
func (c *Cache) UseTree(ctx context.Context, d cache.Digest, fill func(root string) error) (root string, release func(), filled bool, err error) {
	if !d.Valid() || len(d.Hex()) != 64 {
		return "", nil, false, fmt.Errorf("tree %s: invalid digest", d)
	}
	if err := os.MkdirAll(c.treesDir(), 0o700); err != nil {
		return "", nil, false, fmt.Errorf("tree %s: %w", d, err)
	}
	// Shared to use, exclusive to fill: a tree found incomplete is filled
	// under the exclusive lock, then taken shared like any other. Three
	// rounds are plenty: a tree that fails its check right after being
	// filled is a fault, not a race.
	for range 3 {
		unlock, err := lockFile(ctx, c.treeLockPath(d), true)
		if err != nil {
			return "", nil, filled, fmt.Errorf("tree %s: %w", d, err)
		}
		ok, err := c.treeComplete(ctx, d)
		if err != nil {
			unlock()
			return "", nil, filled, fmt.Errorf("tree %s: %w", d, err)
		}
		if ok {
			// The marker's mtime is the tree's last use, for Prune's LRU.
			now := c.now()
			_ = os.Chtimes(filepath.Join(c.treeDir(d), treeMarkerName), now, now)
			return filepath.Join(c.treeDir(d), treeRootName), unlock, filled, nil
		}
		unlock()
		did, err := c.fillTree(ctx, d, fill)
		if err != nil {
			return "", nil, filled, fmt.Errorf("tree %s: %w", d, err)
		}
		filled = filled || did
	}
	return "", nil, filled, fmt.Errorf("tree %s: still incomplete after unpacking it", d)
}

// fillTree unpacks d by fill unless another caller did meanwhile,
// replacing what an incomplete tree left. It holds the tree's lock
// exclusively, so no one uses or prunes the tree meanwhile.
func (c *Cache) fillTree(ctx context.Context, d cache.Digest, fill func(root string) error) (bool, error) {
	unlock, err := lockFile(ctx, c.treeLockPath(d), false)
	if err != nil {
		return false, err
	}
	defer unlock()
	if ok, err := c.treeComplete(ctx, d); err != nil || ok {
		return false, err
	}
	dir := c.treeDir(d)
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("remove the incomplete tree: %w", err)
	}
	root := filepath.Join(dir, treeRootName)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return false, err
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		return false, err
	}
	err = fill(root)
	if err == nil {
		err = c.writeTreeMarker(ctx, d)
	}
	if err != nil {
		if rerr := os.RemoveAll(dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the incomplete tree: %w", rerr))
		}
		return false, err
	}
	return true, nil
}

// KeepTree makes the directory src the tree of blob d, moving it
// (rename(2), never a copy) when the cache has no complete tree of d; src
// must be what unpacking d gives, and nothing may write to it from now
// on. It reports whether src was kept; when not (a tree of d is there
// already or in use, or src is on another filesystem) src is left where
// it was.
func (c *Cache) KeepTree(ctx context.Context, d cache.Digest, src string) (bool, error) {
	if !d.Valid() || len(d.Hex()) != 64 {
		return false, fmt.Errorf("keep tree %s: invalid digest", d)
	}
	if err := os.MkdirAll(c.treesDir(), 0o700); err != nil {
		return false, fmt.Errorf("keep tree %s: %w", d, err)
	}
	l := flock.New(c.treeLockPath(d), flock.SetPermissions(0o644))
	defer l.Close()
	if ok, err := l.TryLock(); err != nil || !ok {
		return false, err // in use or being filled: it is there, or will be
	}
	if ok, err := stillLinked(l, c.treeLockPath(d)); err != nil || !ok {
		return false, err
	}
	if ok, err := c.treeComplete(ctx, d); err != nil || ok {
		return false, err
	}
	dir := c.treeDir(d)
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("keep tree %s: %w", d, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return false, fmt.Errorf("keep tree %s: %w", d, err)
	}
	if err := os.Rename(src, filepath.Join(dir, treeRootName)); err != nil {
		os.Remove(dir)
		if errors.Is(err, unix.EXDEV) {
			return false, nil
		}
		return false, fmt.Errorf("keep tree %s: %w", d, err)
	}
	if err := c.writeTreeMarker(ctx, d); err != nil {
		return false, errors.Join(fmt.Errorf("keep tree %s: %w", d, err), os.RemoveAll(dir))
	}
	return true, nil
}

// writeTreeMarker records the complete tree of d.
func (c *Cache) writeTreeMarker(ctx context.Context, d cache.Digest) error {
	m, err := fingerprint(ctx, filepath.Join(c.treeDir(d), treeRootName))
	if err != nil {
		return err
	}
	m.Digest = d
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return c.writeFile(filepath.Join(c.treeDir(d), treeMarkerName), data)
}

// treeComplete reports whether the tree of d is complete: its marker
// names d and still describes it (see fingerprint).
func (c *Cache) treeComplete(ctx context.Context, d cache.Digest) (bool, error) {
	m, err := readTreeMarker(c.treeDir(d))
	if err != nil || m.Digest != d {
		return false, nil // missing, partial or foreign: fill again
	}
	got, err := fingerprint(ctx, filepath.Join(c.treeDir(d), treeRootName))
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	if err != nil {
		return false, nil
	}
	return got.Entries == m.Entries && got.Bytes == m.Bytes && got.Stat == m.Stat, nil
}

// readTreeMarker reads dir's marker.
func readTreeMarker(dir string) (treeMarker, error) {
	var m treeMarker
	f, err := os.Open(filepath.Join(dir, treeMarkerName))
	if err != nil {
		return m, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, treeMarkerMax))
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(data, &m)
	return m, err
}

// fingerprint walks root (not following symlinks) and digests every
// entry's relative path and lstat(2): type and mode, owner, size, inode,
// link count, device number, mtime and ctime. A write, truncate, chmod,
// chown, xattr change, link or unlink changes a ctime (which no system
// call sets back) or the list of entries; only atime may change freely.
//
// Every child checks its parent's tree so before using it, so the walk
// is lean: each directory is read once and its entries are stat'ed
// relative to it (not by a path resolved from the root again), and each
// line is appended, not formatted by fmt. The lines are those of
//
//	fmt.Fprintf(h, "%q %o %d:%d %d %d %d %d %d.%09d %d.%09d\n", rel, mode, uid, gid,
//		size, ino, nlink, rdev, mtime.sec, mtime.nsec, ctime.sec, ctime.nsec)
//
// for every entry in the order of filepath.WalkDir, root ("") first, as
// markers written before have them (fingerprintReference in the tests).
func fingerprint(ctx context.Context, root string) (treeMarker, error) {
	fp := &fingerprinter{ctx: ctx, h: sha256.New(), seen: map[uint64]bool{}}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return fp.m, &fs.PathError{Op: "lstat", Path: root, Err: err}
	}
	fp.add("", &st)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fp.m, &fs.PathError{Op: "open", Path: root, Err: err}
		}
		if err := fp.dir(fd, root, ""); err != nil {
			return fp.m, err
		}
	}
	fp.m.Stat = "sha256:" + hex.EncodeToString(fp.h.Sum(nil))
	return fp.m, nil
}

// fingerprinter is the state of one fingerprint walk.
type fingerprinter struct {
	ctx  context.Context
	h    hash.Hash
	m    treeMarker
	seen map[uint64]bool // inodes of hard links counted
	line []byte
}

// dir digests the entries of the directory open at fd (rel below the
// root, "" for the root; root to name it in errors), recursing into the
// directories among them, and closes fd.
func (fp *fingerprinter) dir(fd int, root, rel string) error {
	f := os.NewFile(uintptr(fd), filepath.Join(root, rel))
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "lstat", Path: filepath.Join(root, p), Err: err}
		}
		if fp.m.Entries%1024 == 0 && fp.ctx.Err() != nil {
			return context.Cause(fp.ctx)
		}
		fp.add(p, &st)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &fs.PathError{Op: "open", Path: filepath.Join(root, p), Err: err}
		}
		if err := fp.dir(sub, root, p); err != nil {
			return err
		}
	}
	return nil
}

// add digests the entry rel with its lstat st.
func (fp *fingerprinter) add(rel string, st *unix.Stat_t) {
	b := strconv.AppendQuote(fp.line[:0], rel)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Mode), 8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(st.Uid), 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, uint64(st.Gid), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, st.Size, 10)
	for _, n := range []uint64{st.Ino, uint64(st.Nlink), st.Rdev} {
		b = append(b, ' ')
		b = strconv.AppendUint(b, n, 10)
	}
	for _, t := range []unix.Timespec{st.Mtim, st.Ctim} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, t.Sec, 10)
		b = append(b, '.')
		b = appendNanos(b, t.Nsec)
	}
	b = append(b, '\n')
	fp.h.Write(b)
	fp.line = b
	fp.m.Entries++
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if fp.seen[st.Ino] {
			return
		}
		fp.seen[st.Ino] = true
	}
	fp.m.Bytes += st.Blocks * 512
}

// appendNanos appends ns as %09d does.
func appendNanos(b []byte, ns int64) []byte {
	if ns < 0 || ns >= 1e9 {
		return fmt.Appendf(b, "%09d", ns)
	}
	var d [9]byte
	for i := 8; i >= 0; i-- {
		d[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(b, d[:]...)
}

// tree is one tree directory as found by a scan.
type tree struct {
	digest   cache.Digest
	used     time.Time // the marker's mtime; zero without one
	bytes    int64     // from the marker; 0 without one
	complete bool      // has a marker naming its digest (not checked further)
}

// scanTrees lists the tree directories, and removes the free lock files
// of trees that have no directory.
func (c *Cache) scanTrees(ctx context.Context) ([]tree, error) {
	ents, err := os.ReadDir(c.treesDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scan trees: %w", err)
	}
	var out []tree
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		if h, ok := strings.CutSuffix(name, ".lock"); ok && e.Type().IsRegular() && cache.Digest("sha256:"+h).Valid() {
			if _, err := os.Lstat(filepath.Join(c.treesDir(), h)); errors.Is(err, fs.ErrNotExist) {
				if _, err := removeFreeLock(filepath.Join(c.treesDir(), name)); err != nil {
					return nil, fmt.Errorf("scan trees: %w", err)
				}
			}
			continue
		}
		d := cache.Digest("sha256:" + name)
		if !e.IsDir() || len(name) != 64 || !d.Valid() {
			continue
		}
		t := tree{digest: d}
		if m, err := readTreeMarker(c.treeDir(d)); err == nil && m.Digest == d {
			t.complete, t.bytes = true, m.Bytes
			if fi, err := os.Stat(filepath.Join(c.treeDir(d), treeMarkerName)); err == nil {
				t.used = fi.ModTime()
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// removeTree removes the tree of d unless a step uses it or fills it,
// and reports whether it did. It unlinks the lock file while holding it,
// like removeFreeLock.
func (c *Cache) removeTree(d cache.Digest) (bool, error) {
	path := c.treeLockPath(d)
	l := flock.New(path, flock.SetPermissions(0o644))
	defer l.Close()
	ok, err := l.TryLock()
	if err != nil {
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
	if !ok {
		return false, nil // in use
	}
	if ok, err := stillLinked(l, path); err != nil || !ok {
		return false, err // removed and made again meanwhile: in use
	}
	if err := os.RemoveAll(c.treeDir(d)); err != nil {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	return true, nil
}
