package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// hashCopy copies r to w (w may be nil), returning the digest and size of
// what was copied.
func hashCopy(ctx context.Context, w io.Writer, r io.Reader) (cache.Digest, int64, error) {
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(w, h)
	}
	n, err := io.CopyBuffer(dst, ctxReader{ctx, r}, make([]byte, copyBufSize))
	if err != nil {
		return "", n, err
	}
	return digestOf(h), n, nil
}
