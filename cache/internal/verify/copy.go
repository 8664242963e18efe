package verify

import (
	"context"
	"crypto/sha256"
	"io"

	"github.com/imsbuild/imsbuild/cache"
)

// BufSize is the buffer of streaming copies.
const BufSize = 256 << 10

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

// WithContext returns r, stopping with ctx's error once ctx is done.
func WithContext(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

// Copy copies r to w with a BufSize buffer, stopping with ctx's error when
// ctx is done.
func Copy(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(w, ctxReader{ctx, r}, make([]byte, BufSize))
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
