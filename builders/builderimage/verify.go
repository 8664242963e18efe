package builderimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// verifyReader hashes what it reads and, at EOF, fails unless the content
// has the expected size and sha256 digest.
type verifyReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64 // -1: unknown
	n    int64
	err  error // sticky
}

func newVerifyReader(r io.ReadCloser, want v1.Hash, size int64) (*verifyReader, error) {
	if want.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: unsupported digest algorithm", want)
	}
	return &verifyReader{r: r, h: sha256.New(), want: want, size: size}, nil
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("blob %s: more than its %d bytes", v.want, v.size)
		return 0, v.err
	}
	if err == io.EOF {
		v.err = v.check()
		if v.err == nil {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifyReader) check() error {
	if v.size >= 0 && v.n != v.size {
		return fmt.Errorf("blob %s: %d bytes, want %d", v.want, v.n, v.size)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
		return fmt.Errorf("blob %s: content has digest sha256:%s", v.want, got)
	}
	return nil
}

func (v *verifyReader) Close() error { return v.r.Close() }

// readVerified reads a small blob (a manifest, an index or a config) whole,
// at most limit bytes, and checks it against want.
func readVerified(r io.ReadCloser, want v1.Hash, size, limit int64) ([]byte, error) {
	defer r.Close()
	if size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes is more than the %d allowed", want, size, limit)
	}
	vr, err := newVerifyReader(r, want, size)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(vr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s: more than the %d bytes allowed", want, limit)
	}
	return b, nil
}
