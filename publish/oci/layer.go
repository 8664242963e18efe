package oci

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/publish"
)

// casLayer is a v1.Layer whose bytes stream from the blobs. Blobs are stored
// as-is, so the compressed and uncompressed forms are the same bytes.
//
// ggcr's Layer methods take no context, so the layer holds the one of the
// push it belongs to; it lives no longer than that push.
type casLayer struct {
	ctx   context.Context
	blobs publish.Blobs
	a     artifact
	hash  v1.Hash
}

var _ v1.Layer = (*casLayer)(nil)

func (l *casLayer) Digest() (v1.Hash, error) { return l.hash, nil }
func (l *casLayer) DiffID() (v1.Hash, error) { return l.hash, nil }
func (l *casLayer) Size() (int64, error)     { return l.a.out.Size, nil }

func (l *casLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.a.mediaType()), nil
}

// Compressed opens the blob. A local blob file (Blobs.Path) is sent as it
// is, so the kernel can copy it to the socket: the registry checks the
// digest of every blob it receives, which makes our own read-time check
// redundant. Other blobs are verified at EOF by Blobs.Open.
func (l *casLayer) Compressed() (io.ReadCloser, error) {
	if p, ok := l.blobs.Path(l.ctx, l.a.out.Digest); ok {
		if fh, err := os.Open(p); err == nil {
			return fh, nil
		}
	}
	rc, err := l.blobs.Open(l.ctx, l.a.out.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.a.name, err)
	}
	return rc, nil
}

func (l *casLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }

// artifactImage is the partial.CompressedImageCore of one image manifest.
type artifactImage struct {
	raw    []byte
	layers map[v1.Hash]*casLayer
}

// emptyConfig is the content of the empty descriptor (image-spec 1.1).
const emptyConfig = "{}"

// newArtifactImage returns the v1.Image whose manifest is raw and whose layers
// are arts.
func newArtifactImage(ctx context.Context, blobs publish.Blobs, raw []byte, arts []artifact) (v1.Image, error) {
	ai := &artifactImage{raw: raw, layers: map[v1.Hash]*casLayer{}}
	for _, a := range arts {
		h, err := v1.NewHash(string(a.out.Digest))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.name, err)
		}
		if _, dup := ai.layers[h]; !dup {
			ai.layers[h] = &casLayer{ctx: ctx, blobs: blobs, a: a, hash: h}
		}
	}
	return partial.CompressedToImage(ai)
}

func (ai *artifactImage) RawConfigFile() ([]byte, error) { return []byte(emptyConfig), nil }
func (ai *artifactImage) RawManifest() ([]byte, error)   { return ai.raw, nil }

func (ai *artifactImage) MediaType() (types.MediaType, error) {
	return types.OCIManifestSchema1, nil
}

func (ai *artifactImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := ai.layers[h]; ok {
		return l, nil
	}
	if h.String() == ocispec.DescriptorEmptyJSON.Digest.String() {
		return emptyLayer{h}, nil
	}
	return nil, fmt.Errorf("unknown blob %s", h)
}

// emptyLayer is the empty config blob "{}".
type emptyLayer struct{ h v1.Hash }

func (e emptyLayer) Digest() (v1.Hash, error) { return e.h, nil }
func (e emptyLayer) Size() (int64, error)     { return int64(len(emptyConfig)), nil }
func (e emptyLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(ocispec.MediaTypeEmptyJSON), nil
}
func (e emptyLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(emptyConfig)), nil
}
