package ctxio

import (
	"context"
	"io"
)

// Reader returns r, returning ctx's error instead of reading once ctx is
// done. A read already blocked in r is not interrupted; r's own ctx (a
// request body's) does that.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (r reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
