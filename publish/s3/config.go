package s3

import (
	"context"
	"fmt"
	"github.com/imsbuild/imsbuild/ims"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Defaults of Config.
const (
	DefaultRegion      = "us-east-1"
	DefaultBucket      = "boot-images"
	DefaultPartSize    = 16 << 20
	DefaultConcurrency = 4
	DefaultMaxAttempts = 5
	MinPartSize        = 5 << 20 // the S3 minimum for all parts but the last
)

// Config says where and how to publish.
type Config struct {
	Endpoint    string // "" = AWS default
	Region      string // default "us-east-1"
	Bucket      string // default "boot-images"
	Prefix      string // key prefix ("" = none); a "/" is appended when missing
	PathStyle   bool
	CABundle    string // PEM file for the endpoint's TLS
	PartSize    int64  // default 16 MiB, at least 5 MiB
	Concurrency int    // parts uploaded in parallel, default 4

	MaxAttempts int           // attempts per request, default 5
	MaxBackoff  time.Duration // longest wait between attempts, default the SDK's (20s)

	// Credentials overrides the SDK default chain when not nil.
	Credentials aws.CredentialsProvider
	// HTTPClient replaces the SDK's HTTP client when not nil (CABundle must
	// then be empty: configure TLS on the client instead).
	HTTPClient aws.HTTPClient
}

func (c *Config) setDefaults() error {
	if c.Region == "" {
		c.Region = DefaultRegion
	}
	if c.Bucket == "" {
		c.Bucket = DefaultBucket
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
	switch {
	case c.PartSize < MinPartSize:
		return fmt.Errorf("part size %d is below the S3 minimum of %d bytes", c.PartSize, MinPartSize)
	case c.Concurrency < 0:
		return fmt.Errorf("concurrency %d is negative", c.Concurrency)
	case c.MaxAttempts < 0:
		return fmt.Errorf("max attempts %d is negative", c.MaxAttempts)
	case c.CABundle != "" && c.HTTPClient != nil:
		return fmt.Errorf("ca bundle %s: set TLS on the given HTTP client instead", c.CABundle)
	}
	return nil
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
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				if cfg.MaxBackoff > 0 {
					o.MaxBackoff = cfg.MaxBackoff
				}
				// A batch upload must not give up because earlier
				// requests used up a shared retry budget.
				o.RateLimiter = ratelimit.None
			})
		}),
		// S3-compatible servers (Ceph RGW, older MinIO) reject the SDK's
		// default trailing checksums; sigv4 payload hashes still protect
		// every request, and HEAD checks the metadata afterwards.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.CABundle != "" {
		f, err := os.Open(cfg.CABundle)
		if err != nil {
			return nil, fmt.Errorf("s3 publisher: ca bundle: %w", err)
		}
		defer f.Close()
		opts = append(opts, config.WithCustomCABundle(f))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 publisher: load aws config: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			// Set here, not in the loaded config, so that AWS_CA_BUNDLE
			// does not apply to a client the caller configured.
			o.HTTPClient = cfg.HTTPClient
		}
	})
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.FailTimeout = 30 * time.Second // abort a failed multipart upload even after cancel
	})
	return &Publisher{cfg: cfg, client: client, tm: tm}, nil
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
