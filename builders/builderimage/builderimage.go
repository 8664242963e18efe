package builderimage

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPlatform is the platform picked from a multi-platform index when
// Options.Platform is empty.
const DefaultPlatform = "linux/amd64"

// Options configure access to the image. The zero value pulls over HTTPS
// with the Docker config's credentials and picks linux/amd64.
type Options struct {
	// Insecure allows plain HTTP to the registry and, unless Transport is
	// set, TLS without certificate verification.
	Insecure bool
	// Keychain supplies registry credentials; nil means
	// authn.DefaultKeychain (the Docker config).
	Keychain authn.Keychain
	// Transport carries the registry requests; nil means the
	// go-containerregistry default transport.
	Transport http.RoundTripper
	// Platform is "os/arch[/variant]", picked from a multi-platform index;
	// empty means DefaultPlatform.
	Platform string
	// Log receives notes about tar entries skipped while unpacking (device
	// files, unsupported types); nil discards them.
	Log io.Writer
}

func (o Options) platform() (v1.Platform, error) {
	s := o.Platform
	if s == "" {
		s = DefaultPlatform
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	return *p, nil
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

// Resolve returns the manifest digest ("sha256:…") of ref without
// downloading layers. ref is a registry reference ("registry/repo:tag",
// "…@sha256:…") or an OCI image layout ("oci-layout:///abs/path[:tag]",
// "oci-layout:///abs/path@sha256:…", or a plain directory path holding an
// oci-layout file). For a multi-platform index the manifest of
// opts.Platform is picked.
func Resolve(ctx context.Context, ref string, opts Options) (digest string, err error) {
	src, want, err := prepare(ref, opts)
	if err != nil {
		return "", err
	}
	_, h, err := src.image(ctx, want)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", ref, err)
	}
	return h.String(), nil
}

// Unpack makes sure <cacheDir>/<digest hex>/rootfs holds the flattened
// filesystem of the image ref names (see [Resolve]) and returns that path
// and the manifest digest. An entry already complete is returned at once;
// for a reference pinned by digest that means without any network access.
// Concurrent callers, in this process or others, unpack an image once: they
// serialize on <cacheDir>/<hex>.lock. A failed or cancelled unpack leaves no
// entry (and no partial rootfs) behind.
func Unpack(ctx context.Context, ref, cacheDir string, opts Options) (rootfs, digest string, err error) {
	src, want, err := prepare(ref, opts)
	if err != nil {
		return "", "", err
	}
	c := cache{dir: cacheDir}
	pinned, isPinned := src.pinned()
	if isPinned {
		if h, ok := c.lookup(pinned, want); ok {
			return c.rootfs(h), h.String(), nil
		}
	}
	img, h, err := src.image(ctx, want)
	if err != nil {
		return "", "", fmt.Errorf("unpack %s: %w", ref, err)
	}
	rootfs, err = c.unpack(ctx, h, img, opts.Log)
	if err != nil {
		return "", "", fmt.Errorf("unpack %s: %w", ref, err)
	}
	if isPinned && pinned != h {
		if err := c.link(pinned, want, h); err != nil {
			return "", "", fmt.Errorf("unpack %s: %w", ref, err)
		}
	}
	return rootfs, h.String(), nil
}

func prepare(ref string, opts Options) (source, v1.Platform, error) {
	want, err := opts.platform()
	if err != nil {
		return nil, v1.Platform{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	src, err := parseRef(ref, opts)
	if err != nil {
		return nil, v1.Platform{}, fmt.Errorf("builder image %s: %w", ref, err)
	}
	return src, want, nil
}
