package oci

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/provenance"
	"github.com/imsbuild/imsbuild/publish"
)

// Media types and annotations of cosign's layout (its ATTESTATION_SPEC and
// simple signing), which the attestation and signature manifests follow so
// that the cosign CLI finds and verifies them.
const (
	// MediaTypeDSSE is the media type of a DSSE envelope: the layer of an
	// attestation manifest and its artifactType as a referrer.
	MediaTypeDSSE = "application/vnd.dsse.envelope.v1+json"
	// MediaTypeSimpleSigning is the layer of a signature manifest: the
	// payload that names the signed image manifest digest.
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// AnnotationSignature holds a layer's base64 signature (empty for a
	// DSSE envelope, which carries its own).
	AnnotationSignature = "dev.cosignproject.cosign/signature"
	// AnnotationPredicateType is the predicate type of an attestation
	// layer, as `cosign attest` writes it.
	AnnotationPredicateType = "predicateType"
)

// Tag suffixes of cosign's attached artifacts: <alg>-<hex>.att and .sig.
const (
	suffixAttestation = ".att"
	suffixSignature   = ".sig"
)

// WithSigner makes the Publisher sign what it pushes with key, an ed25519
// or ECDSA P-256 private key (the build's signing key): an image with a
// provenance output gets it re-signed with the image manifest added as a
// subject, which `cosign verify-attestation` requires, and every image gets
// a cosign signature of its manifest (`cosign verify`). The provenance
// envelope must verify with key's public key and name the image's
// artifacts, else the push fails: the publisher signs no statement it did
// not check.
func WithSigner(key crypto.Signer) Option {
	return func(o *options) error {
		if key == nil {
			return errors.New("signer: nil, want ed25519 or ECDSA P-256")
		}
		// By the public key: a signer may be any crypto.Signer (the
		// engine's decrypts an encrypted key at its first signature).
		switch k := key.Public().(type) {
		case ed25519.PublicKey:
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return fmt.Errorf("signer: ECDSA curve %s, want P-256", k.Curve.Params().Name)
			}
		default:
			return fmt.Errorf("signer: %T, want ed25519 or ECDSA P-256", k)
		}
		o.signer = key
		return nil
	}
}

// provenanceEnvelope returns img's provenance output read from blobs
// (verified at EOF), or false when the image has none.
func provenanceEnvelope(ctx context.Context, blobs publish.Blobs, img publish.Image) ([]byte, bool, error) {
	out, ok := img.Outputs[ims.ProvenanceFile]
	if !ok {
		return nil, false, nil
	}
	if err := publish.CheckDigest(out.Digest); err != nil {
		return nil, false, fmt.Errorf("%s: %w", ims.ProvenanceFile, err)
	}
	rc, err := blobs.Open(ctx, out.Digest)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ims.ProvenanceFile, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, provenance.MaxEnvelope+1))
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ims.ProvenanceFile, err)
	}
	if len(b) > provenance.MaxEnvelope {
		return nil, false, fmt.Errorf("%s: larger than %d bytes", ims.ProvenanceFile, provenance.MaxEnvelope)
	}
	return b, true, nil
}

// statement returns the provenance statement to sign for the image
// manifest subject: env's, checked with the signer's public key against
// the image's artifacts, with the manifest added as a subject named after
// the repository (cosign verify-attestation matches an image by it). It
// runs before anything is pushed.
func (p *Publisher) statement(ctx context.Context, arts []artifact, env []byte, subject digest.Digest) ([]byte, error) {
	want := make(map[string]digest.Digest, len(arts))
	for _, a := range arts {
		want[a.name] = a.out.Digest
	}
	v, err := provenance.VerifyDigests(ctx, env, p.opts.signer.Public(), want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ims.ProvenanceFile, err)
	}
	return v.WithSubject(p.repo.Name(), subject)
}

// attest pushes the provenance envelope env of the image manifest subject
// as one manifest that is both cosign's attestation (tag sha256-<hex>.att,
// one DSSE layer) and an image-spec 1.1 referrer of the image (its subject;
// ggcr maintains the referrers tag schema on registries without the API).
// With a signer, env is replaced by statement st signed again. Nothing is
// pushed when the tag already holds env, or with a signer an envelope of st
// that verifies: an ECDSA signature differs each time, and a new one would
// add a referrer on every publish.
func (p *Publisher) attest(ctx context.Context, pusher *remote.Pusher, read []remote.Option, img publish.Image, env, st []byte, subject ocispec.Descriptor) error {
	tag := cosignTag(p.repo, subject.Digest, suffixAttestation)
	attached := func(layer []byte) bool { return bytes.Equal(layer, env) }
	if p.opts.signer != nil {
		attached = func(layer []byte) bool {
			var e struct{ Payload []byte }
			if json.Unmarshal(layer, &e) != nil || !bytes.Equal(e.Payload, st) {
				return false
			}
			_, err := provenance.VerifyDigests(ctx, layer, p.opts.signer.Public(), map[string]digest.Digest{p.repo.Name(): subject.Digest})
			return err == nil
		}
	}
	// Already attached, perhaps among attestations cosign appended to the
	// tag since: pushing ours again would drop theirs.
	if old, err := pushedLayer(p.repo, tag, MediaTypeDSSE, read, attached); err != nil || old != nil {
		return err
	}
	if p.opts.signer != nil {
		var err error
		if env, err = provenance.Sign(ctx, st, p.opts.signer); err != nil {
			return err
		}
	}
	layer := ocispec.Descriptor{
		MediaType: MediaTypeDSSE,
		Digest:    digest.FromBytes(env),
		Size:      int64(len(env)),
		Annotations: map[string]string{
			AnnotationSignature:     "",
			AnnotationPredicateType: provenance.PredicateType,
			ocispec.AnnotationTitle: ims.ProvenanceFile,
		},
	}
	raw, err := attachedManifestJSON(img, MediaTypeDSSE, layer, &subject)
	if err != nil {
		return err
	}
	return p.pushAttached(ctx, pusher, tag, raw, layer, env)
}

// simpleSigning is cosign's signature payload (sigstore's "simple signing"
// format): it names the signed manifest digest and the repository.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// sign pushes a cosign signature of the image manifest subject (tag
// sha256-<hex>.sig, one simple signing layer whose signature is an
// annotation), unless the tag holds one of the same payload that verifies.
func (p *Publisher) sign(ctx context.Context, pusher *remote.Pusher, read []remote.Option, img publish.Image, subject ocispec.Descriptor) error {
	var ss simpleSigning
	ss.Critical.Identity.DockerReference = p.repo.Name()
	ss.Critical.Image.DockerManifestDigest = subject.Digest.String()
	ss.Critical.Type = "cosign container image signature"
	payload, err := json.Marshal(ss)
	if err != nil {
		return err
	}
	tag := cosignTag(p.repo, subject.Digest, suffixSignature)
	attached := func(layer []byte, ann map[string]string) bool {
		b, err := base64.StdEncoding.DecodeString(ann[AnnotationSignature])
		return err == nil && bytes.Equal(layer, payload) && provenance.VerifyBlob(p.opts.signer.Public(), payload, b) == nil
	}
	// Already signed, perhaps among signatures cosign appended since.
	if old, err := pushedLayerAnn(p.repo, tag, MediaTypeSimpleSigning, read, attached); err != nil || old != nil {
		return err
	}
	b, err := provenance.SignBlob(p.opts.signer, payload)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	sig := base64.StdEncoding.EncodeToString(b)
	layer := ocispec.Descriptor{
		MediaType:   MediaTypeSimpleSigning,
		Digest:      digest.FromBytes(payload),
		Size:        int64(len(payload)),
		Annotations: map[string]string{AnnotationSignature: sig},
	}
	raw, err := attachedManifestJSON(img, MediaTypeSimpleSigning, layer, nil)
	if err != nil {
		return err
	}
	return p.pushAttached(ctx, pusher, tag, raw, layer, payload)
}

// cosignTag is the tag cosign attaches artifacts of manifest d under:
// sha256-<hex><suffix>.
func cosignTag(repo name.Repository, d digest.Digest, suffix string) name.Tag {
	return repo.Tag(d.Algorithm().String() + "-" + d.Encoded() + suffix)
}

// attachedManifestJSON is the manifest of an attestation or signature: an
// image-spec 1.1 artifact with the empty config and one layer, a referrer
// of subject when it is set. Like the SBOM's it has no random part.
func attachedManifestJSON(img publish.Image, artifactType string, layer ocispec.Descriptor, subject *ocispec.Descriptor) ([]byte, error) {
	config := ocispec.DescriptorEmptyJSON
	config.Data = nil
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       config,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      subject,
	}
	if !img.Created.IsZero() {
		m.Annotations = map[string]string{ocispec.AnnotationCreated: img.Created.UTC().Format(time.RFC3339)}
	}
	return json.Marshal(m)
}

// pushAttached pushes the one-layer manifest raw, whose layer holds data,
// under tag. The pusher skips a tag that already names this manifest.
func (p *Publisher) pushAttached(ctx context.Context, pusher *remote.Pusher, tag name.Tag, raw []byte, layer ocispec.Descriptor, data []byte) error {
	mem := memBlobs{layer.Digest: data}
	ai, err := newArtifactImage(ctx, mem, raw, []artifact{{name: layer.Annotations[ocispec.AnnotationTitle], out: publish.Artifact{Digest: layer.Digest, Size: layer.Size, MediaType: layer.MediaType}}})
	if err != nil {
		return err
	}
	if err := pusher.Push(ctx, tag, ai); err != nil {
		return fmt.Errorf("push %s: %w", tag, err)
	}
	return nil
}

// pushedLayer returns the first layer of mediaType in the manifest at tag
// for which ok says true, or nil when there is none (no tag yet, or only
// other content). ro are the options of reads.
func pushedLayer(repo name.Repository, tag name.Tag, mediaType string, ro []remote.Option, ok func([]byte) bool) ([]byte, error) {
	return pushedLayerAnn(repo, tag, mediaType, ro, func(b []byte, _ map[string]string) bool { return ok(b) })
}

// pushedLayerAnn is pushedLayer whose ok also sees the layer's annotations.
func pushedLayerAnn(repo name.Repository, tag name.Tag, mediaType string, ro []remote.Option, ok func([]byte, map[string]string) bool) ([]byte, error) {
	layers, err := attachedLayers(tag, mediaType, ro)
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		b, err := readLayer(repo, l, ro)
		if err != nil {
			return nil, err
		}
		if ok(b, l.Annotations) {
			return b, nil
		}
	}
	return nil, nil
}

// maxAttached bounds the layers read from one attestation or signature
// manifest: it is hostile input, and cosign appends one layer per signing.
const maxAttached = 16

// attachedLayers returns the layers of mediaType in the manifest at ref,
// or none when ref does not exist.
func attachedLayers(ref name.Reference, mediaType string, ro []remote.Option) ([]v1.Descriptor, error) {
	desc, err := remote.Get(ref, ro...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", ref, err)
	}
	var out []v1.Descriptor
	for _, l := range m.Layers {
		if string(l.MediaType) == mediaType && len(out) < maxAttached {
			out = append(out, l)
		}
	}
	return out, nil
}

// readLayer downloads a small layer (an envelope or a signature payload),
// verified by ggcr against its digest at EOF.
func readLayer(repo name.Repository, l v1.Descriptor, ro []remote.Option) ([]byte, error) {
	if l.Size < 0 || l.Size > provenance.MaxEnvelope {
		return nil, fmt.Errorf("layer %s: size %d, at most %d is read", l.Digest, l.Size, provenance.MaxEnvelope)
	}
	layer, err := remote.Layer(repo.Digest(l.Digest.String()), ro...)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if int64(len(b)) != l.Size {
		return nil, fmt.Errorf("layer %s: %d bytes, want %d: %w", l.Digest, len(b), l.Size, publish.ErrCorrupt)
	}
	return b, nil
}

// memBlobs serves small blobs made at publish time (an envelope, a
// signature payload) to newArtifactImage.
type memBlobs map[digest.Digest][]byte

func (m memBlobs) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	b, ok := m[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, publish.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (m memBlobs) Stat(_ context.Context, d digest.Digest) (int64, error) {
	b, ok := m[d]
	if !ok {
		return 0, fmt.Errorf("blob %s: %w", d, publish.ErrNotFound)
	}
	return int64(len(b)), nil
}

func (m memBlobs) Path(context.Context, digest.Digest) (string, bool) { return "", false }
