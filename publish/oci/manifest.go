package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

// ArtifactType is the artifactType of every imsbuild image manifest.
const ArtifactType = "application/vnd.imsbuild.image.v1"

// Manifest annotations set by imsbuild besides the org.opencontainers ones.
const (
	AnnotationName        = "io.imsbuild.name"
	AnnotationArch        = "io.imsbuild.arch"
	AnnotationKey         = "io.imsbuild.key"          // the cache key of the step that built the image
	AnnotationID          = "io.imsbuild.id"           // the IMS image id
	AnnotationIMSManifest = "io.imsbuild.ims-manifest" // the IMS manifest.json, links as the S3 layout has them
)

// IMSBucket is the bucket the IMS manifest annotation links artifacts to.
const IMSBucket = "boot-images"

// artifact is one output to publish as a layer.
type artifact struct {
	name string
	out  publish.Artifact
}

func (a artifact) mediaType() string {
	if a.out.MediaType != "" {
		return a.out.MediaType
	}
	return ims.MediaTypeOf(a.name)
}

// artifacts returns img's publishable outputs in layer order, after checking
// that each one is in blobs with the recorded size.
func artifacts(ctx context.Context, blobs publish.Blobs, img publish.Image) ([]artifact, error) {
	if _, ok := img.Outputs[ims.ArtifactRootfs]; !ok {
		return nil, errors.New("no rootfs output")
	}
	var arts []artifact
	for _, n := range ims.ArtifactNames() { // the layer order; other outputs are not layers
		out, ok := img.Outputs[n]
		if !ok {
			continue
		}
		if err := publish.CheckDigest(out.Digest); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		size, err := blobs.Stat(ctx, out.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if size != out.Size {
			return nil, fmt.Errorf("%s %s: size %d in the blobs, output says %d: %w", n, out.Digest, size, out.Size, publish.ErrCorrupt)
		}
		arts = append(arts, artifact{name: n, out: out})
	}
	return arts, nil
}

// manifestJSON returns the canonical OCI manifest of img (map keys sorted by
// encoding/json, so equal inputs give equal digests).
func manifestJSON(img publish.Image, arts []artifact, source, revision string) ([]byte, error) {
	ann := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			ann[k] = v
		}
	}
	if !img.Created.IsZero() {
		set(ocispec.AnnotationCreated, img.Created.UTC().Format(time.RFC3339))
	}
	set(ocispec.AnnotationSource, source)
	set(ocispec.AnnotationRevision, revision)
	set(AnnotationName, img.Name)
	set(AnnotationArch, img.Arch)
	set(AnnotationKey, img.Key)
	id := imageID(img, arts)
	set(AnnotationID, id)
	if m := imsManifest(img, id, arts); m != nil {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		set(AnnotationIMSManifest, string(b))
	}

	config := configOf(img.Arch)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       config,
		Layers:       make([]ocispec.Descriptor, 0, len(arts)),
		Annotations:  ann,
	}
	for _, a := range arts {
		m.Layers = append(m.Layers, ocispec.Descriptor{
			MediaType:   a.mediaType(),
			Digest:      a.out.Digest,
			Size:        a.out.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: a.name},
		})
	}
	return json.Marshal(m)
}

// imageID is img.ID, or the id derived from the name and artifact digests.
func imageID(img publish.Image, arts []artifact) string {
	if img.ID != "" {
		return img.ID
	}
	ds := make([]string, len(arts))
	for i, a := range arts {
		ds[i] = string(a.out.Digest)
	}
	return ims.ImageID(img.Name, ds...)
}

// imsManifest returns the IMS manifest.json of img as the S3 layout holds it,
// or nil when an artifact has no md5 (IMS requires one).
func imsManifest(img publish.Image, id string, arts []artifact) *ims.Manifest {
	m := &ims.Manifest{Version: ims.ManifestVersion, Created: img.Created.UTC().Format(ims.ManifestTimeLayout)}
	for _, a := range arts {
		if a.out.MD5 == "" {
			return nil
		}
		m.Artifacts = append(m.Artifacts, ims.Artifact{
			Link: ims.Link{Path: fmt.Sprintf("s3://%s/%s/%s", IMSBucket, id, a.name), Etag: a.out.MD5, Type: "s3"},
			Type: a.mediaType(),
			MD5:  a.out.MD5,
		})
	}
	if m.Validate() != nil {
		return nil
	}
	return m
}
