package oci

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/remoteblob"
	"github.com/imsbuild/imsbuild/internal/httpsonly"
)

// Media and artifact types of the manifests the cache writes.
const (
	ActionArtifactType    = "application/vnd.imsbuild.action.v1"
	ActionConfigMediaType = "application/vnd.imsbuild.action.config.v1+json"
	StepArtifactType      = "application/vnd.imsbuild.step.v1"
	StepConfigMediaType   = "application/vnd.imsbuild.step.config.v1+json"
	// DefaultLayerMediaType is the media type of an output that has none.
	DefaultLayerMediaType = "application/octet-stream"
	// LogTitle is the title of the log layer; AnnotationRole marks it.
	LogTitle       = ".log"
	AnnotationRole = "io.imsbuild.role"
)

// blobs provides the blob methods of Cache: Put, PutFile, Stat, Open,
// Materialize, PutVerified and StatAll.
type blobs = *remoteblob.Store

// Options says how to reach the registry.
type Options struct {
	// Insecure talks plain HTTP. Loopback and RFC 1918 registries always do.
	Insecure bool
	// Transport carries every request (auth and scopes are layered on top);
	// default remote.DefaultTransport.
	Transport http.RoundTripper
	// Keychain resolves credentials; default authn.DefaultKeychain (the
	// Docker config).
	Keychain authn.Keychain
	// TempDir holds the spool files of Put without a digest; default os.TempDir().
	TempDir string
}

// Cache is a remote cache in one repository. It is safe for concurrent use.
type Cache struct {
	blobs // Put, PutFile, Stat, Open, Materialize, PutVerified, StatAll
	repo  name.Repository
	base  string // scheme://registry/v2/<repo>
	opts  Options

	mu   sync.Mutex
	pull http.RoundTripper // authorised for pull; made on first use
	push http.RoundTripper // authorised for push and pull
}

var _ cache.Store = (*Cache)(nil)

// ParseURL returns the repository of "oci://registry/repo".
func ParseURL(raw string, insecure bool) (name.Repository, error) {
	rest, ok := strings.CutPrefix(raw, "oci://")
	if !ok || !strings.Contains(rest, "/") {
		return name.Repository{}, fmt.Errorf("parse %s: want oci://registry/repository", raw)
	}
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(strings.TrimSuffix(rest, "/"), append(nopts, name.StrictValidation)...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("parse %s: %w", raw, err)
	}
	return repo, nil
}

// Open returns the cache at url ("oci://registry/repo"). It makes no
// request: an unreachable registry shows at the first operation.
func Open(ctx context.Context, url string, opts Options) (*Cache, error) {
	repo, err := ParseURL(url, opts.Insecure)
	if err != nil {
		return nil, fmt.Errorf("open cache %w", err)
	}
	// Plain HTTP only on loopback or when asked for (see httpsonly).
	opts.Transport = httpsonly.Transport(opts.Transport, repo.RegistryStr(), opts.Insecure)
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	c := &Cache{
		repo: repo,
		base: repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr(),
		opts: opts,
	}
	c.blobs = remoteblob.New(remoteblob.Remote{Head: c.headBlob, Upload: c.uploadBlob, Get: c.getBlob},
		opts.TempDir, "imsbuild-oci-put-*")
	return c, nil
}

// Name returns the cache's URL, "oci://registry/repo".
func (c *Cache) Name() string { return "oci://" + c.repo.Name() }

// Repository returns the repository of c.
func (c *Cache) Repository() name.Repository { return c.repo }

// transport returns the round tripper authorised for pull or push, making
// it (ping, token) on first use. A failure is not remembered.
func (c *Cache) transport(ctx context.Context, push bool) (http.RoundTripper, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if push && c.push != nil {
		return c.push, nil
	}
	if !push && c.pull != nil {
		return c.pull, nil
	}
	auth, err := c.opts.Keychain.Resolve(c.repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", c.repo.RegistryStr(), err)
	}
	scope := transport.PullScope
	if push {
		scope = transport.PushScope
	}
	rt, err := transport.NewWithContext(ctx, c.repo.Registry, auth, c.opts.Transport, []string{c.repo.Scope(scope)})
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.repo.RegistryStr(), err)
	}
	if push {
		c.push = rt
	} else {
		c.pull = rt
	}
	return rt, nil
}
