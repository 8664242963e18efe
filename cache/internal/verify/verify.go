package verify

import (
	"hash"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/verify"
)

// Reader is internal/verify's Reader: what the cache backends read blobs
// through.
type Reader = verify.Reader

// ReadCloser is a Reader whose Close closes what it reads.
type ReadCloser = verify.ReadCloser

// New returns a Reader of r that expects blob want, size bytes long (-1:
// unknown); a mismatch wraps cache.ErrCorrupt and reads as
// "blob <want>: content is <got>: …".
func New(r io.Reader, want cache.Digest, size int64) *Reader {
	return NewOp("blob", r, want, size)
}

// NewOp is New with op naming what is read in the mismatch error, as in
// "<op> <want>: content is <got>: …".
func NewOp(op string, r io.Reader, want cache.Digest, size int64) *Reader {
	return verify.New(op, r, digest.Digest(want), size, verify.WithMismatch(cache.ErrCorrupt))
}

// Sum returns the sha256 digest h holds.
func Sum(h hash.Hash) cache.Digest {
	return cache.Digest(digest.NewDigest(digest.SHA256, h))
}
