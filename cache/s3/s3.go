package s3

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/remoteblob"
	"github.com/imsbuild/imsbuild/internal/s3client"
)

// Defaults of Options.
const (
	DefaultRegion      = "us-east-1"
	DefaultPartSize    = 8 << 20
	DefaultConcurrency = 4
	DefaultMaxAttempts = 5
	MinPartSize        = s3client.MinPartSize // the S3 minimum for all parts but the last
)

// maxBackoff is the default longest wait between attempts of a request.
const maxBackoff = 5 * time.Second

// blobs provides the blob methods of Cache: Put, PutFile, Stat, Open,
// Materialize, and StatAll.
type blobs = *remoteblob.Store

// Options says how to reach the bucket. The zero value uses AWS S3 with the
// SDK's default credential chain.
type Options struct {
	// Config is the client: Endpoint ("" = AWS), Region (default
	// "us-east-1"), PathStyle, CABundle, HTTPClient, Credentials, PartSize
	// (default 8 MiB, at least 5 MiB), Concurrency (parts in parallel per
	// blob, default 4), MaxAttempts (default 5) and MaxBackoff (default 5 s).
	s3client.Config
	// TempDir holds the spool files of Put without a digest; default os.TempDir().
	TempDir string
}

func (o *Options) setDefaults() error {
	if o.Region == "" {
		o.Region = DefaultRegion
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = maxBackoff
	}
	return o.Check()
}

// Cache is a remote cache in one bucket under one prefix. It is safe for
// concurrent use.
type Cache struct {
	blobs  // Put, PutFile, Stat, Open, Materialize, StatAll
	bucket string
	prefix string // "" or ending in "/"
	opts   Options
	client *s3.Client
	tm     *transfermanager.Client
}

var _ cache.Store = (*Cache)(nil)

// ParseURL splits "s3://bucket/prefix" into the bucket and the prefix
// (without leading or trailing slashes; "" when there is none).
func ParseURL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("parse %s: %w", raw, err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("parse %s: want s3://bucket[/prefix]", raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if strings.Contains(prefix, "//") {
		return "", "", fmt.Errorf("parse %s: empty path segment in the prefix", raw)
	}
	return u.Host, prefix, nil
}

// Open returns the cache at url ("s3://bucket/prefix"). It loads the SDK
// configuration but makes no request: an unreachable endpoint or a missing
// bucket shows at the first operation.
func Open(ctx context.Context, url string, opts Options) (*Cache, error) {
	bucket, prefix, err := ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("open cache %w", err)
	}
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("open cache %s: %w", url, err)
	}
	client, err := s3client.NewClient(ctx, opts.Config)
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", url, err)
	}
	tm := s3client.NewUploader(client, opts.Config)
	if prefix != "" {
		prefix += "/"
	}
	c := &Cache{bucket: bucket, prefix: prefix, opts: opts, client: client, tm: tm}
	c.blobs = remoteblob.New(remoteblob.Remote{Head: c.headBlob, Upload: c.uploadBlob, Get: c.getBlob},
		opts.TempDir, "imsbuild-s3-put-*")
	return c, nil
}

// Name returns the cache's URL, "s3://bucket/prefix".
func (c *Cache) Name() string {
	return "s3://" + c.bucket + "/" + strings.TrimSuffix(c.prefix, "/")
}

// Bucket returns the bucket of c.
func (c *Cache) Bucket() string { return c.bucket }

// BlobKey returns the object key of blob d.
func (c *Cache) BlobKey(d cache.Digest) string {
	h := d.Hex()
	if len(h) < 2 {
		return c.prefix + "blobs/sha256/invalid/" + h
	}
	return c.prefix + "blobs/sha256/" + h[:2] + "/" + h
}

// ActionKey returns the object key of the action record of key.
func (c *Cache) ActionKey(key string) string { return c.prefix + "actions/" + key + ".json" }

func (c *Cache) stepKey(name string) string { return c.prefix + "steps/" + name }

// url returns "s3://bucket/key" for error messages.
func (c *Cache) url(key string) string { return "s3://" + c.bucket + "/" + key }
