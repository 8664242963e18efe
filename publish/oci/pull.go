package oci

import (
	"context"
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

// pullBuffer is the copy buffer of a pull: 1 MiB writes instead of
// io.Copy's 32 KiB ones (a rootfs is gigabytes).
const pullBuffer = 1 << 20

// writeVerified streams r, a blob reader from ggcr, into a temp file beside
// a.Path, checks its size and digest, then renames it into place.
//
// ggcr's blob reader hashes what it reads and fails the read at EOF when the
// sha256 is not the one asked for, so the digest check is its: hashing the
// bytes a second time here cost a pull of 1 GiB another half second of CPU.
// An error at the end of a whole blob is that check. The file is not
// fsynced: a pull lands in a work dir that its caller copies into the cache
// (which syncs), and a file lost to a crash is pulled again; waiting for the
// disk made a pull of 1 GiB take seconds longer than `crane pull`.
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
	// Read one byte past the size so a longer blob is caught. Hide the
	// file's ReadFrom, which would copy 32 KiB at a time.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.LimitReader(ctxio.Reader(ctx, r), a.Size+1), make([]byte, pullBuffer))
	switch {
	case err != nil && n == a.Size && ctx.Err() == nil:
		return fmt.Errorf("content is not %s: %w: %w", a.Digest, publish.ErrCorrupt, err)
	case err != nil:
		return err
	case n != a.Size:
		return fmt.Errorf("got %d bytes, want %d: %w", n, a.Size, publish.ErrCorrupt)
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
