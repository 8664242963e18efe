package builderimage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxIndexDepth bounds how many nested indexes a reference may go through.
const maxIndexDepth = 4

// loadIndex reads the index manifest with digest h, verifying the digest.
type loadIndex func(ctx context.Context, h v1.Hash) (*v1.IndexManifest, error)

// resolveDesc follows d through (nested) indexes to the image manifest of
// platform want.
func resolveDesc(ctx context.Context, d v1.Descriptor, want v1.Platform, load loadIndex) (v1.Descriptor, error) {
	for range maxIndexDepth + 1 {
		switch {
		case d.MediaType.IsImage():
			return d, nil
		case d.MediaType.IsIndex():
			im, err := load(ctx, d.Digest)
			if err != nil {
				return v1.Descriptor{}, err
			}
			next, err := pick(im.Manifests, want)
			if err != nil {
				return v1.Descriptor{}, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			d = next
		default:
			return v1.Descriptor{}, fmt.Errorf("%s: unsupported media type %q (want an image manifest or index)", d.Digest, d.MediaType)
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%s: more than %d nested indexes", d.Digest, maxIndexDepth)
}

// pick returns the first descriptor whose platform satisfies want, or the
// only descriptor when it declares no platform.
func pick(descs []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	if len(descs) == 0 {
		return v1.Descriptor{}, errors.New("no manifests")
	}
	var have []string
	for _, d := range descs {
		if d.Platform == nil {
			continue
		}
		if d.Platform.Satisfies(want) && (d.MediaType.IsImage() || d.MediaType.IsIndex()) {
			return d, nil
		}
		have = append(have, d.Platform.String())
	}
	if len(descs) == 1 && descs[0].Platform == nil {
		return descs[0], nil
	}
	if len(have) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%d manifests without platforms, cannot pick %s: name one by tag or digest", len(descs), want)
	}
	return v1.Descriptor{}, fmt.Errorf("no manifest for platform %s (have %s)", want, strings.Join(have, ", "))
}
