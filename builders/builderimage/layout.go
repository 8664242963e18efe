package builderimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifestLimit bounds the manifests, indexes and configs read whole.
const manifestLimit = 8 << 20

// refNameAnnotation names a tag in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// layoutSource is an image in an OCI image layout directory, selected by
// tag, by digest, or as the layout's only (or only matching) image.
type layoutSource struct {
	dir    string
	tag    string
	digest v1.Hash // zero: none
}

func (s *layoutSource) pinned() (v1.Hash, bool) {
	return s.digest, s.digest != v1.Hash{}
}

func (s *layoutSource) image(ctx context.Context, want v1.Platform) (v1.Image, v1.Hash, error) {
	start, err := s.start(want)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	load := func(ctx context.Context, h v1.Hash) (*v1.IndexManifest, error) {
		raw, err := s.readBlob(h, -1)
		if err != nil {
			return nil, err
		}
		im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", h, err)
		}
		return im, nil
	}
	d, err := resolveDesc(ctx, start, want, load)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	raw, err := s.readBlob(d.Digest, d.Size)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, v1.Hash{}, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	img, err := partial.CompressedToImage(&layoutImage{src: s, desc: d, raw: raw, manifest: m})
	if err != nil {
		return nil, v1.Hash{}, err
	}
	return img, d.Digest, nil
}

// start returns the descriptor the reference selects in index.json (or, for
// a digest, the blob itself).
func (s *layoutSource) start(want v1.Platform) (v1.Descriptor, error) {
	if s.digest != (v1.Hash{}) {
		return s.sniff(s.digest)
	}
	f, err := os.Open(filepath.Join(s.dir, "index.json"))
	if err != nil {
		return v1.Descriptor{}, err
	}
	defer f.Close()
	top, err := v1.ParseIndexManifest(io.LimitReader(f, manifestLimit))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%s: %w", f.Name(), err)
	}
	descs := top.Manifests
	if s.tag != "" {
		descs = nil
		for _, d := range top.Manifests {
			if n := d.Annotations[refNameAnnotation]; n == s.tag || strings.HasSuffix(n, ":"+s.tag) {
				descs = append(descs, d)
			}
		}
		if len(descs) == 0 {
			return v1.Descriptor{}, fmt.Errorf("%s: no manifest tagged %q", s.dir, s.tag)
		}
		if len(descs) == 1 {
			return descs[0], nil
		}
	}
	d, err := pick(descs, want)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("%s: %w", s.dir, err)
	}
	return d, nil
}

// sniff makes a descriptor for the manifest or index blob h.
func (s *layoutSource) sniff(h v1.Hash) (v1.Descriptor, error) {
	raw, err := s.readBlob(h, -1)
	if err != nil {
		return v1.Descriptor{}, err
	}
	var probe struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Layers    json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return v1.Descriptor{}, fmt.Errorf("blob %s: %w", h, err)
	}
	d := v1.Descriptor{MediaType: probe.MediaType, Digest: h, Size: int64(len(raw))}
	if d.MediaType == "" {
		switch {
		case probe.Manifests != nil:
			d.MediaType = types.OCIImageIndex
		case probe.Layers != nil:
			d.MediaType = types.OCIManifestSchema1
		}
	}
	return d, nil
}

func (s *layoutSource) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

// openBlob opens blob h for streaming, verified against h and size.
func (s *layoutSource) openBlob(h v1.Hash, size int64) (io.ReadCloser, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: unsupported digest algorithm", h)
	}
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, err
	}
	return newVerifyReader(f, h, size), nil
}

// readBlob reads the small blob h whole, verified.
func (s *layoutSource) readBlob(h v1.Hash, size int64) ([]byte, error) {
	if h.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: unsupported digest algorithm", h)
	}
	f, err := os.Open(s.blobPath(h))
	if err != nil {
		return nil, err
	}
	return readVerified(f, h, size, manifestLimit)
}

// layoutImage is the partial.CompressedImageCore of a layout image whose
// blobs are all verified while read.
type layoutImage struct {
	src      *layoutSource
	desc     v1.Descriptor
	raw      []byte
	manifest *v1.Manifest
}

func (i *layoutImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *layoutImage) MediaType() (types.MediaType, error) { return i.desc.MediaType, nil }

func (i *layoutImage) RawConfigFile() ([]byte, error) {
	c := i.manifest.Config
	return i.src.readBlob(c.Digest, c.Size)
}

func (i *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.manifest.Layers {
		if d.Digest == h {
			return &layoutLayer{src: i.src, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("manifest %s: no layer %s", i.desc.Digest, h)
}

// layoutLayer is one layer blob of a layout image.
type layoutLayer struct {
	src  *layoutSource
	desc v1.Descriptor
}

func (l *layoutLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *layoutLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *layoutLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *layoutLayer) Compressed() (io.ReadCloser, error) {
	return l.src.openBlob(l.desc.Digest, l.desc.Size)
}
