package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations that name the image in index.json: containerd's import takes
// the full reference from the first, OCI tools the tag from the second.
const (
	containerdNameAnnotation = "io.containerd.image.name"
	refNameAnnotation        = "org.opencontainers.image.ref.name"
)

// Config is what the image runs and when it was made.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// Epoch is the creation time written in the config and the latest
	// modification time of any file (SOURCE_DATE_EPOCH).
	Epoch time.Time
}

// Image returns a linux/amd64 image of layers (bottom first) with cfg.
func Image(layers []v1.Layer, cfg Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: cfg.Epoch.UTC()}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = cfg.Env
	cf.History = nil
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// File is one entry of [FilesLayer]: a regular file, or a directory when Dir
// is set.
type File struct {
	Path string // relative, slash-separated
	Mode int64  // permission bits
	Dir  bool
	Data []byte
}

// FilesLayer returns a layer holding files (owned by root, mtime epoch), in
// path order, with every parent directory listed.
func FilesLayer(files []File, epoch time.Time) (v1.Layer, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := path.Clean(strings.TrimPrefix(f.Path, "/"))
		if p == "." || strings.HasPrefix(p, "../") || p == ".." {
			return nil, fmt.Errorf("layer file %q: not a relative path inside the image", f.Path)
		}
		f.Path = p
		byPath[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = File{Path: d, Mode: 0o755, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{Name: p, Mode: f.Mode, ModTime: epoch.UTC(), Typeflag: tar.TypeReg, Size: int64(len(f.Data)), Format: tar.FormatPAX}
		if f.Dir {
			h.Name, h.Typeflag, h.Size = p+"/", tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// NormalizeTar copies the tar stream r to w with reproducible metadata:
// modification times after epoch are clamped to it, access and change times
// and owner names dropped (numeric ids kept), and the PAX records other than
// extended attributes removed.
func NormalizeTar(w io.Writer, r io.Reader, epoch time.Time) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if h.ModTime.After(epoch) {
			h.ModTime = epoch
		}
		h.ModTime = h.ModTime.Truncate(time.Second).UTC()
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		h.Uname, h.Gname = "", ""
		pax := map[string]string{}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				pax[k] = v
			}
		}
		// The reader also fills the deprecated Xattrs with the same
		// SCHILY.xattr records; the writer merges both into one.
		h.PAXRecords = pax
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write tar %s: %w", h.Name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", h.Name, err)
		}
	}
	return tw.Close()
}

// WriteLayout writes img as an OCI image layout packed in a tar to w, its
// index naming it ref (e.g. "imsbuild.local/pause:1"), and returns the
// manifest digest.
func WriteLayout(w io.Writer, img v1.Image, ref string) (v1.Hash, error) {
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("manifest: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("config: %w", err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("config: %w", err)
	}
	tag := ref
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		tag = ref[i+1:]
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(rawManifest)),
			Platform:  &v1.Platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{
				containerdNameAnnotation: ref,
				refNameAnnotation:        tag,
			},
		}},
	}
	rawIndex, err := json.Marshal(index)
	if err != nil {
		return v1.Hash{}, err
	}
	tw := tar.NewWriter(w)
	put := func(name string, size int64, r io.Reader) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		return nil
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(0, 0).UTC(), Format: tar.FormatPAX}); err != nil {
			return v1.Hash{}, err
		}
	}
	layout := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	if err := put("oci-layout", int64(len(layout)), bytes.NewReader(layout)); err != nil {
		return v1.Hash{}, err
	}
	if err := put("index.json", int64(len(rawIndex)), bytes.NewReader(rawIndex)); err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("layers: %w", err)
	}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("layer digest: %w", err)
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("layer %s: %w", d, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, fmt.Errorf("layer %s: %w", d, err)
		}
		err = put("blobs/sha256/"+d.Hex, size, rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
	}
	if err := put("blobs/sha256/"+cfgName.Hex, int64(len(rawConfig)), bytes.NewReader(rawConfig)); err != nil {
		return v1.Hash{}, err
	}
	if err := put("blobs/sha256/"+digest.Hex, int64(len(rawManifest)), bytes.NewReader(rawManifest)); err != nil {
		return v1.Hash{}, err
	}
	if err := tw.Close(); err != nil {
		return v1.Hash{}, err
	}
	return digest, nil
}
