package oci

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imsbuild/imsbuild/internal/httpsonly"
	"github.com/imsbuild/imsbuild/publish"
)

var _ publish.Publisher = (*Publisher)(nil)

// Config says where and how images are pushed.
type Config struct {
	// Repository is "registry/path" (the image name may already be
	// interpolated into it). It must not carry a tag or digest.
	Repository string
	// Tags are the tags each image gets; default ["latest"].
	Tags []string
	// Insecure allows plain HTTP (local registries without TLS). Without it
	// only loopback registries (127.0.0.0/8, ::1, localhost) may use plain
	// HTTP; any other registry, private addresses included, gets HTTPS.
	Insecure bool
	// Source and Revision become the org.opencontainers.image.source and
	// .revision annotations when set.
	Source, Revision string
}

// Option configures a Publisher or Pull.
type Option func(*options) error

type options struct {
	keychain  authn.Keychain
	transport http.RoundTripper
	signer    crypto.Signer // nil: no signing (WithSigner)
}

// WithKeychain resolves registry credentials with k instead of the Docker
// config (authn.DefaultKeychain).
func WithKeychain(k authn.Keychain) Option {
	return func(o *options) error {
		if k == nil {
			return errors.New("nil keychain")
		}
		o.keychain = k
		return nil
	}
}

// WithTransport sends every registry request through rt (auth, retries and
// the user agent are layered on top of it).
func WithTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("nil transport")
		}
		o.transport = rt
		return nil
	}
}

func newOptions(opts []Option) (*options, error) {
	o := &options{keychain: authn.DefaultKeychain}
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// remote returns the ggcr options for one operation on registry bound to
// ctx; insecure allows plain HTTP to it.
func (o *options) remote(ctx context.Context, registry name.Registry, insecure bool) []remote.Option {
	ro := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(o.keychain),
		remote.WithUserAgent("imsbuild"),
		// ggcr's default (3 tries, 1 s then 3 s) gives up on a registry that
		// fails one request in four; back off longer, as the S3 client does.
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 7, Cap: 10 * time.Second}),
	}
	return append(ro, remote.WithTransport(httpsonly.Transport(o.transport, registry.RegistryStr(), insecure)))
}

// Publisher pushes images to one repository.
type Publisher struct {
	cfg  Config
	repo name.Repository
	tags []name.Tag
	opts *options
}

// New validates cfg and opts and returns a Publisher.
func New(cfg Config, opts ...Option) (*Publisher, error) {
	if cfg.Repository == "" {
		return nil, errors.New("publish oci: no repository")
	}
	var nopts []name.Option
	if cfg.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(cfg.Repository, nopts...)
	if err != nil {
		return nil, fmt.Errorf("publish oci %s: %w", cfg.Repository, err)
	}
	if len(cfg.Tags) == 0 {
		cfg.Tags = []string{"latest"}
	}
	p := &Publisher{cfg: cfg, repo: repo}
	seen := map[string]bool{}
	for _, t := range cfg.Tags {
		if seen[t] {
			continue
		}
		seen[t] = true
		tag, err := name.NewTag(repo.Name()+":"+t, nopts...)
		if err != nil || tag.TagStr() != t {
			return nil, fmt.Errorf("publish oci %s: invalid tag %q", cfg.Repository, t)
		}
		p.tags = append(p.tags, tag)
	}
	if p.opts, err = newOptions(opts); err != nil {
		return nil, fmt.Errorf("publish oci %s: %w", cfg.Repository, err)
	}
	return p, nil
}

// Publish pushes each image to the repository under every tag. All images
// share the repository and tags, so more than one image is refused: interpolate
// the image name into the repository and use one Publisher per image.
func (p *Publisher) Publish(ctx context.Context, blobs publish.Blobs, images []publish.Image) error {
	if len(images) > 1 {
		return fmt.Errorf("publish oci %s: %d images would share the tags %v; put the image name in the repository", p.repo, len(images), p.cfg.Tags)
	}
	for _, img := range images {
		if _, err := p.PushImage(ctx, blobs, img); err != nil {
			return err
		}
	}
	return nil
}

// PushImage pushes img's manifest by digest, then what is attached to it —
// the SBOM as a referrer (pushSBOM), the provenance as cosign's attestation
// and a referrer (attest), a cosign signature with a signer (sign) — and
// tags it last, so that a tag never names an image without them. It
// returns the image manifest reference ("registry/repo@sha256:…"). Nothing
// is pushed unless every artifact is in blobs with the digest and size its
// Artifact records.
func (p *Publisher) PushImage(ctx context.Context, blobs publish.Blobs, img publish.Image) (string, error) {
	first := p.tags[0]
	arts, err := artifacts(ctx, blobs, img)
	if err != nil {
		return "", fmt.Errorf("push %s: image %s: %w", first, img.Label, err)
	}
	sb, hasSBOM, err := sbomArtifact(ctx, blobs, img)
	if err != nil {
		return "", fmt.Errorf("push %s: image %s: %w", first, img.Label, err)
	}
	env, hasProvenance, err := provenanceEnvelope(ctx, blobs, img)
	if err != nil {
		return "", fmt.Errorf("push %s: image %s: %w", first, img.Label, err)
	}
	raw, err := manifestJSON(img, arts, p.cfg.Source, p.cfg.Revision)
	if err != nil {
		return "", fmt.Errorf("push %s: image %s: %w", first, img.Label, err)
	}
	ai, err := newArtifactImage(ctx, blobs, raw, arts)
	if err != nil {
		return "", fmt.Errorf("push %s: image %s: %w", first, img.Label, err)
	}
	d, err := ai.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", first, err)
	}
	ref := p.repo.Digest(d.String())
	subject := subjectOf(raw, d)
	var statement []byte
	if hasProvenance && p.opts.signer != nil {
		if statement, err = p.statement(ctx, arts, env, subject.Digest); err != nil {
			return "", fmt.Errorf("push %s: image %s: %w", ref, img.Label, err)
		}
	}
	// One pusher per call: it uploads each blob once for all tags and skips
	// manifests and tags the registry already has, yet remembers nothing
	// between calls, so a registry that lost a blob gets it again.
	ro := p.opts.remote(ctx, p.repo.Registry, p.cfg.Insecure)
	pusher, err := remote.NewPusher(ro...)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", first, err)
	}
	// Reads of what is attached share one puller: one auth handshake.
	puller, err := remote.NewPuller(ro...)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", first, err)
	}
	read := append(slices.Clip(ro), remote.Reuse(puller))
	if err := pusher.Push(ctx, ref, ai); err != nil {
		if cerr := corruptBlob(ctx, blobs, arts, err); cerr != nil {
			return "", fmt.Errorf("push %s: %w", ref, cerr)
		}
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if hasSBOM {
		if err := p.pushSBOM(ctx, pusher, blobs, img, sb, subject); err != nil {
			return "", fmt.Errorf("push %s: image %s: sbom: %w", ref, img.Label, err)
		}
	}
	if hasProvenance {
		if err := p.attest(ctx, pusher, read, img, env, statement, subject); err != nil {
			return "", fmt.Errorf("push %s: image %s: provenance: %w", ref, img.Label, err)
		}
	}
	if p.opts.signer != nil {
		if err := p.sign(ctx, pusher, read, img, subject); err != nil {
			return "", fmt.Errorf("push %s: image %s: signature: %w", ref, img.Label, err)
		}
	}
	for _, tag := range p.tags {
		if err := pusher.Push(ctx, tag, ai); err != nil {
			return "", fmt.Errorf("push %s: %w", tag, err)
		}
	}
	return ref.String(), nil
}

// corruptBlob tells a registry's digest rejection caused by a corrupt blob
// (local blob files are sent unverified; the registry checks every digest)
// by reading the blobs again through the verifying Blobs.Open.
func corruptBlob(ctx context.Context, blobs publish.Blobs, arts []artifact, pushErr error) error {
	if !strings.Contains(pushErr.Error(), "DIGEST_INVALID") {
		return nil
	}
	for _, a := range arts {
		rc, err := blobs.Open(ctx, a.out.Digest)
		if err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if errors.Is(err, publish.ErrCorrupt) {
			return fmt.Errorf("%s: %w", a.name, err)
		}
	}
	return nil
}
