package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/imsbuild/imsbuild/cache"
)

// copyBufSize is the buffer of streaming copies.
const copyBufSize = 256 << 10

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func digestOf(h hash.Hash) cache.Digest {
	return cache.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

// verifier hashes what is read through it and, at EOF, returns an error
// wrapping cache.ErrCorrupt instead of io.EOF when the content is not want
// (or not size bytes long, when size >= 0). Its error is sticky.
type verifier struct {
	r    io.Reader
	h    hash.Hash
	want cache.Digest
	size int64 // -1: unknown
	n    int64
	err  error
}

func newVerifier(r io.Reader, want cache.Digest, size int64) *verifier {
	return &verifier{r: r, h: sha256.New(), want: want, size: size}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := digestOf(v.h); got != v.want {
			v.err = fmt.Errorf("blob %s: content is %s: %w", v.want, got, cache.ErrCorrupt)
			return n, v.err
		}
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("blob %s: %d bytes, want %d: %w", v.want, v.n, v.size, cache.ErrCorrupt)
			return n, v.err
		}
	} else if err != nil {
		v.err = err
	}
	return n, err
}

// corrupt returns the verification error, if that is what stopped v.
func (v *verifier) corrupt() error {
	if v.err != nil && v.err != io.EOF {
		return v.err
	}
	return nil
}

// readCloser is a verifier over a response body.
type readCloser struct {
	*verifier
	io.Closer
}
