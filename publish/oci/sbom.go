package oci

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

// sbomArtifact returns img's SBOM output checked against blobs, or false
// when the image has none (a result cached before SBOMs, or an unchanged
// remote import).
func sbomArtifact(ctx context.Context, blobs publish.Blobs, img publish.Image) (artifact, bool, error) {
	out, ok := img.Outputs[ims.SBOMFile]
	if !ok {
		return artifact{}, false, nil
	}
	if err := publish.CheckDigest(out.Digest); err != nil {
		return artifact{}, false, fmt.Errorf("%s: %w", ims.SBOMFile, err)
	}
	size, err := blobs.Stat(ctx, out.Digest)
	if err != nil {
		return artifact{}, false, fmt.Errorf("%s: %w", ims.SBOMFile, err)
	}
	if size != out.Size {
		return artifact{}, false, fmt.Errorf("%s %s: size %d in the blobs, output says %d: %w", ims.SBOMFile, out.Digest, size, out.Size, publish.ErrCorrupt)
	}
	out.MediaType = ims.MediaTypeSPDX
	return artifact{name: ims.SBOMFile, out: out}, true, nil
}

// sbomManifestJSON returns the manifest that attaches the SBOM to the image
// manifest subject: an image-spec 1.1 artifact (artifactType
// application/spdx+json, empty config, the document as its one layer) whose
// subject makes it a referrer, so `oras discover` lists it. It has no
// random part: a republish pushes the same manifest.
func sbomManifestJSON(img publish.Image, sb artifact, subject ocispec.Descriptor) ([]byte, error) {
	layer := ocispec.Descriptor{
		MediaType:   ims.MediaTypeSPDX,
		Digest:      sb.out.Digest,
		Size:        sb.out.Size,
		Annotations: map[string]string{ocispec.AnnotationTitle: ims.SBOMFile},
	}
	return attachedManifestJSON(img, ims.MediaTypeSPDX, layer, &subject)
}

// pushSBOM pushes img's SBOM as a referrer of the image manifest subject
// (by digest, untagged). A registry without the referrers API gets the
// referrers tag schema instead (the sha256-<hex> index tag): ggcr's push
// maintains it when the registry does not answer the referrers API.
func (p *Publisher) pushSBOM(ctx context.Context, pusher *remote.Pusher, blobs publish.Blobs, img publish.Image, sb artifact, subject ocispec.Descriptor) error {
	raw, err := sbomManifestJSON(img, sb, subject)
	if err != nil {
		return err
	}
	ai, err := newArtifactImage(ctx, blobs, raw, []artifact{sb})
	if err != nil {
		return err
	}
	d, err := ai.Digest()
	if err != nil {
		return err
	}
	ref := p.repo.Digest(d.String())
	if err := pusher.Push(ctx, ref, ai); err != nil {
		if cerr := corruptBlob(ctx, blobs, []artifact{sb}, err); cerr != nil {
			return fmt.Errorf("push %s: %w", ref, cerr)
		}
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

// subjectOf describes the pushed image manifest raw for a referrer.
func subjectOf(raw []byte, d v1.Hash) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(d.String()), Size: int64(len(raw))}
}
