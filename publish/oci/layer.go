package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
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
	config []byte // the config blob raw names
	layers map[v1.Hash]*casLayer
}

// emptyConfig is the content of the empty descriptor (image-spec 1.1).
const emptyConfig = "{}"

// platformConfigs are the config blobs of images of an architecture other
// than x86_64: an OCI image config holding only the platform, as `oras push
// --artifact-platform` writes it, so registries, crane and oras see the
// artifact's platform (linux/arm64). An x86_64 image keeps the empty config
// (its manifests, digests and referrers stay as they were).
var platformConfigs = map[string]string{
	"aarch64": `{"architecture":"arm64","os":"linux"}`,
}

// configOf returns the config descriptor of an image of arch.
func configOf(arch string) ocispec.Descriptor {
	b, ok := platformConfigs[arch]
	if !ok {
		d := ocispec.DescriptorEmptyJSON
		d.Data = nil
		return d
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromString(b), Size: int64(len(b))}
}

// configBlob returns the config blob that the manifest raw names: a
// platform config or else the empty one.
func configBlob(raw []byte) []byte {
	var m ocispec.Manifest
	if json.Unmarshal(raw, &m) == nil {
		for _, b := range platformConfigs {
			if digest.FromString(b) == m.Config.Digest {
				return []byte(b)
			}
		}
	}
	return []byte(emptyConfig)
}

// newArtifactImage returns the v1.Image whose manifest is raw and whose layers
// are arts.
func newArtifactImage(ctx context.Context, blobs publish.Blobs, raw []byte, arts []artifact) (v1.Image, error) {
	ai := &artifactImage{raw: raw, config: configBlob(raw), layers: map[v1.Hash]*casLayer{}}
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

func (ai *artifactImage) RawConfigFile() ([]byte, error) { return ai.config, nil }
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
	if h.String() == digest.FromBytes(ai.config).String() {
		return configLayer{h, ai.config}, nil
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

// configLayer is a platform config blob (see platformConfigs).
type configLayer struct {
	h v1.Hash
	b []byte
}

func (c configLayer) Digest() (v1.Hash, error) { return c.h, nil }
func (c configLayer) Size() (int64, error)     { return int64(len(c.b)), nil }
func (c configLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(ocispec.MediaTypeImageConfig), nil
}
func (c configLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(c.b)), nil
}
