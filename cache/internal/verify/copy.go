package verify

import (
	"context"
	"crypto/sha256"
	"io"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// BufSize is the buffer of streaming copies.
const BufSize = 256 << 10

// Copy copies r to w with a BufSize buffer, stopping with ctx's error when
// ctx is done.
func Copy(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(w, ctxio.Reader(ctx, r), make([]byte, BufSize))
}

// HashCopy is Copy that also returns the digest of what was copied; w may
// be nil to only hash r.
func HashCopy(ctx context.Context, w io.Writer, r io.Reader) (cache.Digest, int64, error) {
	h := sha256.New()
	dst := io.Writer(h)
	if w != nil {
		dst = io.MultiWriter(w, h)
	}
	n, err := Copy(ctx, dst, r)
	if err != nil {
		return "", n, err
	}
	return Sum(h), n, nil
}
