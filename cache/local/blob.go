package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/verify"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// blobPerm is the mode of stored blobs; materialized read-only files share it
// when they are hard links.
const blobPerm = 0o444

// Put streams r into the store, hashing while copying, and verifies want
// when it is not empty.
func (c *Cache) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	if want != "" && !want.Valid() {
		return "", 0, fmt.Errorf("put blob: invalid digest %q", want)
	}
	unlock, err := c.gcShared(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer unlock()
	f, err := atomicfile.CreateTemp(c.tmpDir(), "", blobPerm)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer f.Abort()
	d, n, err := verify.HashCopy(ctx, f, r)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	if want != "" && d != want {
		return "", 0, fmt.Errorf("put blob %s: content is %s: %w", want, d, cache.ErrCorrupt)
	}
	if err := c.commitBlob(ctx, f, d); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// PutFile stores a copy of the file at path: a reflink where the filesystem
// supports it, else a streaming copy. It never hard-links, so later edits of
// the file cannot corrupt the cache.
func (c *Cache) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
	src, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("put %w", err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	} else if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("put %s: not a regular file", path)
	}
	unlock, err := c.gcShared(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	defer unlock()
	f, err := atomicfile.CreateTemp(c.tmpDir(), "", blobPerm)
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	defer f.Abort()
	var d cache.Digest
	var n int64
	if reflink(f.OSFile(), src) == nil {
		// Hash the clone, not the source: it is what gets stored.
		d, n, err = verify.HashCopy(ctx, nil, io.NewSectionReader(f.OSFile(), 0, 1<<62))
	} else {
		d, n, err = verify.HashCopy(ctx, f, src)
	}
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if err := c.commitBlob(ctx, f, d); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	return d, n, nil
}

// commitBlob renames the complete temp file f to the blob path of d and
// records it as verified. A blob already there is replaced: the rename is
// cheap once the bytes are written, it heals a damaged blob, and the fresh
// mtime gives the new reference Prune's grace period. The caller holds the
// cache-wide lock shared.
func (c *Cache) commitBlob(ctx context.Context, f *atomicfile.File, d cache.Digest) error {
	p := c.BlobPath(d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("put blob %s: %w", d, err)
	}
	if err := f.CommitAs(p); err != nil {
		return fmt.Errorf("put blob %s: %w", d, err)
	}
	c.rememberWritten(ctx, d, p)
	return nil
}

// Open returns the blob d; reading it to EOF verifies its digest, and a
// corrupt blob is dropped (see dropCorrupt) as it is reported.
func (c *Cache) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	f, err := c.openBlob(d)
	if err != nil {
		return nil, err
	}
	return &blobReader{Reader: verify.NewOp("read blob", f, d, -1), c: c, ctx: ctx, d: d, f: f}, nil
}

// blobReader reads an open blob file through verify, dropping the blob on
// a mismatch. It holds the ctx of Open for that, as io.Reader takes none.
type blobReader struct {
	*verify.Reader
	c       *Cache
	ctx     context.Context
	d       cache.Digest
	f       *os.File
	dropped bool
}

func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && !r.dropped && errors.Is(err, cache.ErrCorrupt) {
		r.dropped = true
		r.c.dropCorrupt(r.ctx, r.d, r.f)
	}
	return n, err
}

func (r *blobReader) Close() error { return r.f.Close() }

func (c *Cache) openBlob(d cache.Digest) (*os.File, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("open blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	f, err := os.Open(c.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open blob %s: %w", d, cache.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return f, nil
}

// Stat returns the size of blob d, or ErrNotFound.
func (c *Cache) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("stat blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	fi, err := os.Stat(c.BlobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("stat blob %s: %w", d, cache.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Materialize puts blob d at dst atomically, creating dst's directory: a
// reflink when the filesystem supports it; else, when readOnly, a hard link
// (mode 0444, which must then never be modified); else a verified streaming
// copy. dst gets mode 0644, or 0444 when readOnly. Every way verifies the
// blob; a corrupt one is dropped (see Check) and the error wraps
// cache.ErrCorrupt.
func (c *Cache) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	src, err := c.openBlob(d)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	perm := os.FileMode(0o644)
	if readOnly {
		perm = blobPerm
	}
	f, err := atomicfile.Create(dst, perm)
	if err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	defer f.Abort()
	// A reflink or a hard link is not read, so the blob is checked first
	// (at once when a verified record says it is unchanged since it was
	// last hashed): consumers such as unsquashfs must never see a corrupt
	// blob, or what they build would be cached under a fresh valid digest.
	if reflink(f.OSFile(), src) == nil {
		if err := c.checkOpen(ctx, d, src); err != nil {
			return fmt.Errorf("materialize %s: %w", d, err)
		}
		return f.Commit()
	}
	if readOnly {
		if err := c.checkOpen(ctx, d, src); err != nil {
			return fmt.Errorf("materialize %s: %w", d, err)
		}
		if err := link(src.Name(), f.Name(), dst); err == nil {
			f.Abort() // already renamed away or removed
			return nil
		}
		// Another filesystem, or links not allowed: copy.
		if f, err = atomicfile.Create(dst, perm); err != nil {
			return fmt.Errorf("materialize %s: %w", d, err)
		}
		defer f.Abort()
	}
	if _, err := verify.Copy(ctx, f, verify.NewOp("read blob", src, d, -1)); err != nil {
		if errors.Is(err, cache.ErrCorrupt) {
			c.dropCorrupt(ctx, d, src)
		}
		return fmt.Errorf("materialize %s to %s: %w", d, dst, err)
	}
	return f.Commit()
}

// UseFile verifies blob d (at once when a verified record says it is
// unchanged, see Check) and calls fn with the path of its file, holding the
// cache-wide lock shared so that Prune cannot remove the blob meanwhile.
// Unlike a hard link this leaves the blob's ctime alone, so its verified
// record stays good for the next build.
func (c *Cache) UseFile(ctx context.Context, d cache.Digest, fn func(path string) error) error {
	f, err := c.openBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	unlock, err := c.gcShared(ctx)
	if err != nil {
		return fmt.Errorf("use blob %s: %w", d, err)
	}
	defer unlock()
	if err := c.checkOpen(ctx, d, f); err != nil {
		return fmt.Errorf("use blob %s: %w", d, err)
	}
	return fn(c.BlobPath(d))
}

// link replaces dst with a hard link to blob, made at the free temp name tmp.
func link(blob, tmp, dst string) error {
	_ = os.Remove(tmp)
	if err := os.Link(blob, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// rename(2) does nothing when tmp and dst are links to one inode.
	_ = os.Remove(tmp)
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// reflink makes dst share src's extents (FICLONE): an instant copy on
// btrfs, XFS and other CoW filesystems, an error elsewhere.
func reflink(dst, src *os.File) error {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
}

// ErrNotAdopted is AdoptFile's refusal of a file it cannot move into the
// cache (another filesystem, more than one link): the caller stores a copy.
var ErrNotAdopted = errors.New("not adopted")

// AdoptFile stores the file at path by moving it into the cache, saving
// PutFile's copy: it hashes the file while syncing it and while writing
// every byte of it to tee (when not nil: an md5 beside; from a goroutine
// of its own, in order), and renames it to its blob path. The caller
// gives the file up: nothing may write to it from the call on (a step's
// own output). A file on another filesystem or with another link is left
// alone with an error wrapping ErrNotAdopted.
func (c *Cache) AdoptFile(ctx context.Context, path string, tee io.Writer) (cache.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("adopt %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	var cst unix.Stat_t
	if err := unix.Stat(c.blobsDir(), &cst); err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", 0, fmt.Errorf("adopt %s: not a regular file", path)
	case st.Nlink != 1:
		return "", 0, fmt.Errorf("adopt %s: %w: %d links", path, ErrNotAdopted, st.Nlink)
	case st.Dev != cst.Dev:
		return "", 0, fmt.Errorf("adopt %s: %w: another filesystem than the cache's", path, ErrNotAdopted)
	}
	unlock, err := c.gcShared(ctx)
	if err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	defer unlock()
	if err := f.Chmod(blobPerm); err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	// The file is final, so its sync (a rootfs is hundreds of megabytes
	// to write back), its sha256 and tee each read it on their own, at
	// once, none waiting for another; the rename below waits for all.
	synced, teed := make(chan error, 1), make(chan error, 1)
	go func() { synced <- f.Sync() }()
	go func() {
		if tee == nil {
			teed <- nil
			return
		}
		_, err := verify.Copy(ctx, tee, io.NewSectionReader(f, 0, st.Size))
		teed <- err
	}()
	d, n, err := verify.HashCopy(ctx, nil, f)
	for _, ch := range []chan error{synced, teed} {
		if cerr := <-ch; err == nil && cerr != nil {
			err = cerr
		}
	}
	if err == nil && n != st.Size {
		err = fmt.Errorf("%d bytes read, %d before: changed while adopted", n, st.Size)
	}
	if err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	p := c.BlobPath(d)
	err = os.MkdirAll(filepath.Dir(p), 0o755)
	if err == nil {
		// A blob already there is replaced, as commitBlob does.
		err = os.Rename(path, p)
	}
	if errors.Is(err, unix.EXDEV) {
		err = fmt.Errorf("%w: %w", ErrNotAdopted, err)
	}
	if err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
		return "", 0, fmt.Errorf("adopt %s: %w", path, err)
	}
	c.rememberWritten(ctx, d, p)
	return d, n, nil
}
