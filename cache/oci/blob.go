package oci

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// Put streams r to the registry as blob want while hashing it; the upload is
// committed only when the content matches. Without want, r is first spooled
// to a temporary file to learn its digest. A blob the registry already has
// is not uploaded again, but r is still read and verified.
func (c *Cache) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	if want != "" && !want.Valid() {
		return "", 0, fmt.Errorf("put blob: invalid digest %q", want)
	}
	if want == "" {
		return c.putSpooled(ctx, r)
	}
	n, err := c.putVerified(ctx, r, want, -1)
	if err != nil {
		return "", 0, err
	}
	return want, n, nil
}

// PutFile uploads the file at path: one pass to hash it, one to upload it
// (verified again, so a file edited meanwhile is refused as corrupt).
func (c *Cache) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("put %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("put %s: not a regular file", path)
	}
	d, n, err := hashCopy(ctx, io.Discard, f)
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if _, err := c.putVerified(ctx, f, d, n); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	return d, n, nil
}

// putSpooled copies r to a temporary file, then uploads that.
func (c *Cache) putSpooled(ctx context.Context, r io.Reader) (cache.Digest, int64, error) {
	f, err := os.CreateTemp(c.opts.TempDir, "imsbuild-oci-put-*")
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	d, n, err := hashCopy(ctx, f, r)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	if _, err := c.putVerified(ctx, f, d, n); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// putVerified uploads r as blob want; size is its length when known, else -1.
func (c *Cache) putVerified(ctx context.Context, r io.Reader, want cache.Digest, size int64) (int64, error) {
	v := newVerifier(ctxReader{ctx, r}, want, size)
	have, err := c.headBlob(ctx, want)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return 0, fmt.Errorf("put blob %s to %s: %w", want, c.repo, err)
	}
	if err == nil && (size < 0 || have == size) {
		n, err := io.CopyBuffer(io.Discard, v, make([]byte, copyBufSize))
		if err != nil {
			return 0, fmt.Errorf("put blob %s: %w", want, err)
		}
		if n != have {
			return 0, fmt.Errorf("put blob %s: %d bytes, the registry has %d: %w", want, n, have, cache.ErrCorrupt)
		}
		return n, nil
	}
	err = c.uploadBlob(ctx, v, want)
	if verr := v.corrupt(); verr != nil {
		return 0, fmt.Errorf("put blob %s: %w", want, verr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("put blob %s: %w", want, context.Cause(ctx))
		}
		return 0, fmt.Errorf("put blob %s to %s: %w", want, c.repo, err)
	}
	return v.n, nil
}

// Stat returns the size of blob d, or ErrNotFound.
func (c *Cache) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("stat blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	n, err := c.headBlob(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("stat blob %s in %s: %w", d, c.repo, err)
	}
	return n, nil
}

// Open returns the blob d; reading it to EOF verifies its digest and
// returns an error wrapping cache.ErrCorrupt on mismatch.
func (c *Cache) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("open blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	body, size, err := c.getBlob(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("open blob %s in %s: %w", d, c.repo, err)
	}
	return readCloser{newVerifier(body, d, size), body}, nil
}

// Materialize downloads blob d to a temporary file beside dst, verifies it,
// and renames it to dst (mode 0644, or 0444 when readOnly). Nothing is left
// at dst on error.
func (c *Cache) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	rc, err := c.Open(ctx, d)
	if err != nil {
		return fmt.Errorf("materialize: %w", err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	perm := os.FileMode(0o644)
	if readOnly {
		perm = 0o444
	}
	f, err := atomicfile.Create(dst, perm)
	if err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	defer f.Abort()
	if _, err := io.CopyBuffer(f, ctxReader{ctx, rc}, make([]byte, copyBufSize)); err != nil {
		return fmt.Errorf("materialize %s to %s: %w", d, dst, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	return nil
}

// hashCopy copies r to w, returning the digest and size of what was copied.
func hashCopy(ctx context.Context, w io.Writer, r io.Reader) (cache.Digest, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), ctxReader{ctx, r}, make([]byte, copyBufSize))
	if err != nil {
		return "", n, err
	}
	return digestOf(h), n, nil
}
