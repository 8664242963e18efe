package builderimage

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imsbuild/imsbuild/internal/httpsonly"
)

// registrySource is an image in a registry.
type registrySource struct {
	ref  name.Reference
	opts Options
}

func (s *registrySource) pinned() (v1.Hash, bool) {
	d, ok := s.ref.(name.Digest)
	if !ok {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(d.DigestStr())
	return h, err == nil
}

func (s *registrySource) remoteOptions(ctx context.Context, want v1.Platform) []remote.Option {
	o := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.opts.keychain()),
		remote.WithPlatform(want),
	}
	rt := s.opts.Transport
	if rt == nil && s.opts.Insecure {
		rt = insecureTransport()
	}
	// Plain HTTP only on loopback or when asked for (see httpsonly).
	return append(o, remote.WithTransport(httpsonly.Transport(rt, s.ref.Context().RegistryStr(), s.opts.Insecure)))
}

// image fetches the manifest (and the indexes on the way to it); layers
// are fetched, and verified against their digests, only when read.
func (s *registrySource) image(ctx context.Context, want v1.Platform) (v1.Image, v1.Hash, error) {
	ropts := s.remoteOptions(ctx, want)
	top, err := remote.Get(s.ref, ropts...)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	repo := s.ref.Context()
	load := func(ctx context.Context, h v1.Hash) (*v1.IndexManifest, error) {
		raw := top.Manifest
		if h != top.Digest {
			d, err := remote.Get(repo.Digest(h.String()), ropts...)
			if err != nil {
				return nil, err
			}
			raw = d.Manifest
		}
		return v1.ParseIndexManifest(bytes.NewReader(raw))
	}
	d, err := resolveDesc(ctx, top.Descriptor, want, load)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	var img v1.Image
	if d.Digest == top.Digest {
		img, err = top.Image()
	} else {
		img, err = remote.Image(repo.Digest(d.Digest.String()), ropts...)
	}
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if got, err := img.Digest(); err != nil || got != d.Digest {
		return nil, v1.Hash{}, fmt.Errorf("manifest %s: digest is %v (%v)", d.Digest, got, err)
	}
	return img, d.Digest, nil
}

// insecureTransport is the default transport without TLS verification.
func insecureTransport() http.RoundTripper {
	base, ok := remote.DefaultTransport.(*http.Transport)
	if !ok {
		base = http.DefaultTransport.(*http.Transport)
	}
	t := base.Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for with Options.Insecure
	return t
}
