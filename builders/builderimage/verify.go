package builderimage

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/internal/verify"
)

// newVerifyReader returns r read through internal/verify: at EOF it fails
// unless the content has the expected size and sha256 digest, and content
// longer than size fails as soon as it overruns.
func newVerifyReader(r io.ReadCloser, want v1.Hash, size int64) io.ReadCloser {
	return verify.ReadCloser{Reader: verify.New("blob", r, digest.Digest(want.String()), size), Closer: r}
}

// readVerified reads a small blob (a manifest, an index or a config) whole,
// at most limit bytes, and checks it against want.
func readVerified(r io.ReadCloser, want v1.Hash, size, limit int64) ([]byte, error) {
	defer r.Close()
	if size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes is more than the %d allowed", want, size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(newVerifyReader(r, want, size), limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s: more than the %d bytes allowed", want, limit)
	}
	return b, nil
}
