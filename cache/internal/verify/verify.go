package verify

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/cache"
)

// Reader hashes what is read through it and, at EOF, returns an error
// wrapping cache.ErrCorrupt instead of io.EOF when the content is not want
// (or not size bytes long, when size >= 0). Its error is sticky.
type Reader struct {
	op   string
	r    io.Reader
	h    hash.Hash
	want cache.Digest
	size int64 // -1: unknown
	n    int64
	err  error
}

// New returns a Reader of r that expects blob want, size bytes long (-1:
// unknown). A mismatch reads as "blob <want>: content is <got>: …".
func New(r io.Reader, want cache.Digest, size int64) *Reader {
	return NewOp("blob", r, want, size)
}

// NewOp is New with op naming what is read in the mismatch error, as in
// "<op> <want>: content is <got>: …".
func NewOp(op string, r io.Reader, want cache.Digest, size int64) *Reader {
	return &Reader{op: op, r: r, h: sha256.New(), want: want, size: size}
}

func (v *Reader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := Sum(v.h); got != v.want {
			v.err = fmt.Errorf("%s %s: content is %s: %w", v.op, v.want, got, cache.ErrCorrupt)
			return n, v.err
		}
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%s %s: %d bytes, want %d: %w", v.op, v.want, v.n, v.size, cache.ErrCorrupt)
			return n, v.err
		}
	} else if err != nil {
		v.err = err
	}
	return n, err
}

// N returns how many bytes were read.
func (v *Reader) N() int64 { return v.n }

// Err returns the error that stopped v (a mismatch or the underlying
// reader's error), or nil.
func (v *Reader) Err() error {
	if v.err != nil && v.err != io.EOF {
		return v.err
	}
	return nil
}

// ReadCloser is a Reader whose Close closes what it reads, such as a
// response body or a file.
type ReadCloser struct {
	*Reader
	io.Closer
}

// Sum returns the sha256 digest h holds.
func Sum(h hash.Hash) cache.Digest {
	return cache.Digest(digest.NewDigest(digest.SHA256, h))
}
