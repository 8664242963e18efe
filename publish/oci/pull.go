package oci

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/publish"
)

// PulledArtifact is one layer Pull wrote.
type PulledArtifact struct {
	Name      string // the layer's org.opencontainers.image.title
	Path      string // dst/<Name>
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// Pull downloads every layer of the imsbuild image manifest at ref to
// dst/<title>, verifying each digest and size while streaming, and returns the
// artifacts by title. A file appears at its path only once verified. ref must
// resolve to an image manifest with artifactType ArtifactType whose layers all
// have distinct plain-file titles.
func Pull(ctx context.Context, ref, dst string, insecure bool, opts ...Option) (map[string]PulledArtifact, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	ro := o.remote(ctx, r.Context().Registry, insecure)
	desc, err := remote.Get(r, ro...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	m, err := parseManifest(string(desc.MediaType), desc.Manifest)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	out := make(map[string]PulledArtifact, len(m.Layers))
	for _, l := range m.Layers {
		title := l.Annotations[ocispec.AnnotationTitle]
		a := PulledArtifact{Name: title, Path: filepath.Join(dst, title), Digest: l.Digest, Size: l.Size, MediaType: l.MediaType}
		layer, err := remote.Layer(r.Context().Digest(l.Digest.String()), ro...)
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r, title, err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r, title, err)
		}
		err = writeVerified(ctx, rc, a)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r, title, err)
		}
		out[title] = a
	}
	return out, nil
}

// parseManifest decodes an imsbuild image manifest and checks its layers.
func parseManifest(mt string, raw []byte) (*ocispec.Manifest, error) {
	if mt != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("media type %s, want %s: not an imsbuild image", mt, ocispec.MediaTypeImageManifest)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("artifactType %q, want %q: not an imsbuild image", m.ArtifactType, ArtifactType)
	}
	seen := map[string]bool{}
	for i, l := range m.Layers {
		title := l.Annotations[ocispec.AnnotationTitle]
		switch {
		case title == "" || title == "." || title == ".." || strings.ContainsAny(title, `/\`) || strings.ContainsRune(title, 0):
			return nil, fmt.Errorf("layer %d: title %q is not a plain file name", i, title)
		case seen[title]:
			return nil, fmt.Errorf("layer %d: duplicate title %q", i, title)
		case publish.CheckDigest(l.Digest) != nil:
			return nil, fmt.Errorf("layer %d: digest %q is not sha256", i, l.Digest)
		case l.Size < 0:
			return nil, fmt.Errorf("layer %d: negative size %d", i, l.Size)
		}
		seen[title] = true
	}
	return &m, nil
}

// writeVerified streams r into a temp file beside a.Path, checks size and
// sha256, then renames it into place.
func writeVerified(ctx context.Context, r io.Reader, a PulledArtifact) (rerr error) {
	f, err := os.CreateTemp(filepath.Dir(a.Path), "."+a.Name+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if rerr != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := sha256.New()
	// Read one byte past the size so a longer blob is caught.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxio.Reader(ctx, r), a.Size+1))
	if err != nil {
		return err
	}
	if n != a.Size {
		return fmt.Errorf("got %d bytes, want %d: %w", n, a.Size, publish.ErrCorrupt)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != a.Digest {
		return fmt.Errorf("content is %s, want %s: %w", got, a.Digest, publish.ErrCorrupt)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), a.Path)
}

// Digest returns the manifest digest ref resolves to, with one HEAD request
// and no download: the engine keys an `import = "oci://…"` with it.
func Digest(ctx context.Context, ref string, insecure bool, opts ...Option) (string, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	o, err := newOptions(opts)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	desc, err := remote.Head(r, o.remote(ctx, r.Context().Registry, insecure)...)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", r, err)
	}
	return desc.Digest.String(), nil
}
