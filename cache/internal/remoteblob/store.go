package remoteblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/verify"
	"github.com/imsbuild/imsbuild/internal/atomicfile"
	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// Remote is one remote's blob operations. Their errors name the remote.
type Remote struct {
	// Head returns the size of blob d, or an error wrapping
	// cache.ErrNotFound. trusted says whether Put may skip uploading
	// content of that size (S3 trusts only objects carrying their sha256).
	Head func(ctx context.Context, d cache.Digest) (size int64, trusted bool, err error)
	// Upload streams r as blob d (size bytes, or -1 when unknown),
	// committing it only when r reads to EOF without error.
	Upload func(ctx context.Context, r io.Reader, d cache.Digest, size int64) error
	// Get returns the body of blob d and its length, -1 when unknown, or an
	// error wrapping cache.ErrNotFound.
	Get func(ctx context.Context, d cache.Digest) (io.ReadCloser, int64, error)
}

// Store implements the blob methods of cache.Store over a Remote. Its
// errors add the operation and the digest to the remote's. It is safe for
// concurrent use when the Remote is.
type Store struct {
	remote  Remote
	tempDir string
	spool   string
}

// New returns the Store of remote. Put without a digest spools to tempDir
// ("" is os.TempDir()) in files named like spoolPattern (see os.CreateTemp).
func New(remote Remote, tempDir, spoolPattern string) *Store {
	return &Store{remote: remote, tempDir: tempDir, spool: spoolPattern}
}

// Put streams r to blob want while hashing it; the upload completes only
// when the content matches. Without want, r is first spooled to a temporary
// file to learn its digest. A blob the remote already has (and trusts) is
// not uploaded again, but r is still read and verified.
func (s *Store) Put(ctx context.Context, r io.Reader, want cache.Digest) (cache.Digest, int64, error) {
	if want != "" && !want.Valid() {
		return "", 0, fmt.Errorf("put blob: invalid digest %q", want)
	}
	if want == "" {
		return s.putSpooled(ctx, r)
	}
	n, err := s.PutVerified(ctx, r, want, -1)
	if err != nil {
		return "", 0, err
	}
	return want, n, nil
}

// PutFile uploads the file at path: one pass to hash it, one to upload it
// (verified again, so a file edited meanwhile is refused as corrupt).
func (s *Store) PutFile(ctx context.Context, path string) (cache.Digest, int64, error) {
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
	d, n, err := verify.HashCopy(ctx, nil, f)
	if err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	if _, err := s.PutVerified(ctx, f, d, n); err != nil {
		return "", 0, fmt.Errorf("put %s: %w", path, err)
	}
	return d, n, nil
}

// putSpooled copies r to a temporary file, then uploads that.
func (s *Store) putSpooled(ctx context.Context, r io.Reader) (cache.Digest, int64, error) {
	f, err := os.CreateTemp(s.tempDir, s.spool)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	d, n, err := verify.HashCopy(ctx, f, r)
	if err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("put blob: %w", err)
	}
	if _, err := s.PutVerified(ctx, f, d, n); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// PutVerified uploads r as blob want, which must be valid; size is its
// length when known, else -1. It returns the length of r.
func (s *Store) PutVerified(ctx context.Context, r io.Reader, want cache.Digest, size int64) (int64, error) {
	v := verify.New(ctxio.Reader(ctx, r), want, size)
	have, trusted, err := s.remote.Head(ctx, want)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return 0, fmt.Errorf("put blob %s: %w", want, err)
	}
	if err == nil && trusted && (size < 0 || have == size) {
		// Present: check r anyway, as the contract says.
		n, err := io.CopyBuffer(io.Discard, v, make([]byte, verify.BufSize))
		if err != nil {
			return 0, fmt.Errorf("put blob %s: %w", want, err)
		}
		if n != have {
			return 0, fmt.Errorf("put blob %s: %d bytes, the remote has %d: %w", want, n, have, cache.ErrCorrupt)
		}
		return n, nil
	}
	err = s.remote.Upload(ctx, v, want, size)
	// The verifier's own error says best why the upload stopped.
	if verr := v.Err(); verr != nil {
		return 0, fmt.Errorf("put blob %s: %w", want, verr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("put blob %s: %w", want, context.Cause(ctx))
		}
		return 0, fmt.Errorf("put blob %s: %w", want, err)
	}
	return v.N(), nil
}

// Stat returns the size of blob d, or an error wrapping cache.ErrNotFound.
func (s *Store) Stat(ctx context.Context, d cache.Digest) (int64, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("stat blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	n, _, err := s.remote.Head(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return n, nil
}

// Open returns the blob d; reading it to EOF verifies its digest (and the
// length the remote announced) and returns an error wrapping
// cache.ErrCorrupt on mismatch.
func (s *Store) Open(ctx context.Context, d cache.Digest) (io.ReadCloser, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("open blob %q: invalid digest: %w", d, cache.ErrNotFound)
	}
	body, size, err := s.remote.Get(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	return verify.ReadCloser{Reader: verify.New(body, d, size), Closer: body}, nil
}

// Materialize downloads blob d to a temporary file beside dst, verifies it,
// and renames it to dst (mode 0644, or 0444 when readOnly). Nothing is left
// at dst on error.
func (s *Store) Materialize(ctx context.Context, d cache.Digest, dst string, readOnly bool) error {
	rc, err := s.Open(ctx, d)
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
	if _, err := verify.Copy(ctx, f, rc); err != nil {
		return fmt.Errorf("materialize %s to %s: %w", d, dst, err)
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("materialize %s: %w", d, err)
	}
	return nil
}
