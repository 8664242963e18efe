package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3client"
)

// Defaults of Config.
const (
	DefaultRegion       = "us-east-1"
	DefaultBucket       = "boot-images"
	DefaultRecipeBucket = "ims"
	DefaultPartSize     = 16 << 20
	DefaultConcurrency  = 4
	DefaultMaxAttempts  = 5
	MinPartSize         = s3client.MinPartSize // the S3 minimum for all parts but the last
)

// Config says where and how to publish.
type Config struct {
	// Config is the client: Endpoint ("" = AWS), Region (default
	// "us-east-1"), PathStyle, CABundle, HTTPClient, Credentials, PartSize
	// (default 16 MiB, at least 5 MiB), Concurrency (parts uploaded in
	// parallel, default 4), MaxAttempts (default 5) and MaxBackoff (default
	// the SDK's, 20 s).
	s3client.Config
	Bucket string // default "boot-images"
	Prefix string // key prefix ("" = none); a "/" is appended when missing
	// RecipeBucket is where PublishRecipe puts recipe archives, under
	// recipes/<id>/recipe.tgz (Prefix does not apply); default "ims".
	RecipeBucket string
}

func (c *Config) setDefaults() error {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
	}
	if c.RecipeBucket == "" {
		c.RecipeBucket = DefaultRecipeBucket
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	c.Prefix = strings.TrimPrefix(c.Prefix, "/")
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	return c.Check()
}

// Publisher publishes images to one bucket. It is safe for concurrent use.
type Publisher struct {
	cfg    Config
	client *s3.Client
	tm     *transfermanager.Client
}

// New returns a publisher for cfg. It loads the SDK configuration
// (credentials, shared config) but makes no request.
func New(ctx context.Context, cfg Config) (*Publisher, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("s3 publisher: %w", err)
	}
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("s3 publisher: %w", err)
	}
	tm := s3client.NewUploader(client, cfg.Config)
	return &Publisher{cfg: cfg, client: client, tm: tm}, nil
}

// newClient returns an S3 client for cfg, whose defaults are set.
func newClient(ctx context.Context, cfg Config) (*s3.Client, error) {
	return s3client.NewClient(ctx, cfg.Config)
}

// Bucket returns the bucket p publishes to.
func (p *Publisher) Bucket() string { return p.cfg.Bucket }

// Key returns the object key of an image's artifact or manifest.json.
func (p *Publisher) Key(imageID, name string) string {
	return p.cfg.Prefix + imageID + "/" + name
}

// Link returns the s3:// URL of an image's artifact or manifest.json, as an
// IMS link path (ImageRecord.link.path is Link(id, ims.ManifestFile)).
func (p *Publisher) Link(imageID, name string) string {
	return "s3://" + p.cfg.Bucket + "/" + p.Key(imageID, name)
}

// ManifestLink returns the IMS link of the published manifest of image id,
// with the ETag the bucket reports for it.
func (p *Publisher) ManifestLink(ctx context.Context, imageID string) (ims.Link, error) {
	key := p.Key(imageID, ims.ManifestFile)
	o, err := p.head(ctx, key)
	if err != nil {
		return ims.Link{}, err
	}
	if o == nil {
		return ims.Link{}, fmt.Errorf("s3://%s/%s: not published", p.cfg.Bucket, key)
	}
	return ims.Link{Path: p.Link(imageID, ims.ManifestFile), Etag: o.etag, Type: "s3"}, nil
}

// Manifest returns the manifest.json published for image id, or nil when
// there is none.
func (p *Publisher) Manifest(ctx context.Context, imageID string) (*ims.Manifest, error) {
	m, _, err := p.readManifest(ctx, p.cfg.Bucket, p.Key(imageID, ims.ManifestFile))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return m, err
}
