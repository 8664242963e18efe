package oci

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/provenance"
)

// ErrNoProvenance: the image has no provenance attached.
var ErrNoProvenance = errors.New("no provenance attached to the image")

// Provenance is an image's attached provenance, as FetchProvenance found it.
// Nothing in it is verified yet: Verify checks it against a public key.
type Provenance struct {
	// Image is the image manifest the reference resolved to,
	// "registry/repo@sha256:…". Pull this, not the tag, to get the
	// artifacts that Verify checked: a tag can move in between.
	Image string
	// Envelopes are the distinct DSSE envelopes attached to the image:
	// those of cosign's attestation tag first, then those of referrers.
	Envelopes [][]byte
	// Artifacts are the image's layers by title (rootfs, kernel, …) with
	// their digests, which a pull verifies.
	Artifacts map[string]digest.Digest
}

// FetchProvenance resolves ref to an imsbuild image manifest and fetches
// the provenance envelopes attached to it: the DSSE layers of cosign's
// sha256-<hex>.att manifest and of the image's referrers of artifactType
// MediaTypeDSSE (the referrers API, or the referrers tag schema on a
// registry without it). Layers and envelopes are bounded in number and
// size and verified against their digests; it downloads no artifact. An
// image without any is an error wrapping ErrNoProvenance.
func FetchProvenance(ctx context.Context, ref string, insecure bool, opts ...Option) (*Provenance, error) {
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", ref, err)
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", ref, err)
	}
	ro := o.remote(ctx, r.Context().Registry, insecure)
	// One puller for all reads: one auth handshake.
	puller, err := remote.NewPuller(ro...)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", r, err)
	}
	ro = append(slices.Clip(ro), remote.Reuse(puller))
	desc, err := remote.Get(r, ro...)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", r, err)
	}
	m, err := parseManifest(string(desc.MediaType), desc.Manifest)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", r, err)
	}
	repo := r.Context()
	d := digest.Digest(desc.Digest.String())
	p := &Provenance{Image: repo.Digest(d.String()).String(), Artifacts: map[string]digest.Digest{}}
	for _, l := range m.Layers {
		p.Artifacts[l.Annotations[ocispec.AnnotationTitle]] = l.Digest
	}

	seen := map[v1.Hash]bool{}
	add := func(mref name.Reference) error {
		layers, err := attachedLayers(mref, MediaTypeDSSE, ro)
		if err != nil {
			return err
		}
		for _, l := range layers {
			if seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			b, err := readLayer(repo, l, ro)
			if err != nil {
				return fmt.Errorf("%s: %w", mref, err)
			}
			p.Envelopes = append(p.Envelopes, b)
		}
		return nil
	}
	if err := add(cosignTag(repo, d, suffixAttestation)); err != nil {
		return nil, fmt.Errorf("fetch provenance %s: %w", p.Image, err)
	}
	idx, err := remote.Referrers(repo.Digest(d.String()), append(ro, remote.WithFilter("artifactType", MediaTypeDSSE))...)
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: referrers: %w", p.Image, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("fetch provenance %s: referrers: %w", p.Image, err)
	}
	for i, rd := range im.Manifests {
		if i == maxAttached {
			break
		}
		if err := add(repo.Digest(rd.Digest.String())); err != nil {
			return nil, fmt.Errorf("fetch provenance %s: referrer: %w", p.Image, err)
		}
	}
	if len(p.Envelopes) == 0 {
		return nil, fmt.Errorf("fetch provenance %s: %w", p.Image, ErrNoProvenance)
	}
	return p, nil
}

// Verify checks the envelopes with pub (provenance.VerifyDigests) against
// every artifact of the image and returns the first that verifies; if none
// does, the errors of all (errors.Is finds provenance.ErrSignature or
// ErrSubject in them).
func (p *Provenance) Verify(ctx context.Context, pub crypto.PublicKey) (*provenance.Verified, error) {
	if len(p.Envelopes) == 0 {
		return nil, fmt.Errorf("verify %s: %w", p.Image, ErrNoProvenance)
	}
	var errs []error
	for _, env := range p.Envelopes {
		v, err := provenance.VerifyDigests(ctx, env, pub, p.Artifacts)
		if err == nil {
			return v, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("verify %s: %w", p.Image, errors.Join(errs...))
}
