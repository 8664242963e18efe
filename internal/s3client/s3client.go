package s3client

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MinPartSize is the S3 minimum for all parts of a multipart upload but
// the last.
const MinPartSize = 5 << 20

// maxIdleConnsPerHost is how many idle connections to the endpoint a
// client keeps for reuse. The SDK's default of 10 is below what one build
// has in flight (every running step's lookups, existence checks and part
// uploads go to the one endpoint): past it, each request dialed a new
// connection and closed it after (32 HEADs at once, three rounds: 76
// connections instead of 32). A server that closes every connection
// itself, as versitygw does ("Connection: close"), gains nothing.
const maxIdleConnsPerHost = 128

// failTimeout bounds the abort of a failed multipart upload, which runs even
// after the upload's context is cancelled.
const failTimeout = 30 * time.Second

// Config says how to reach S3. Callers fill in their defaults first; NewClient
// and NewUploader take the fields as they are.
type Config struct {
	Endpoint  string // "" = AWS default
	Region    string
	PathStyle bool
	CABundle  string // PEM file for the endpoint's TLS
	// HTTPClient replaces the SDK's HTTP client when not nil (CABundle must
	// then be empty: configure TLS on the client instead).
	HTTPClient aws.HTTPClient
	// Credentials overrides the SDK default chain when not nil.
	Credentials aws.CredentialsProvider
	PartSize    int64         // multipart part size and threshold
	Concurrency int           // parts uploaded in parallel per object
	MaxAttempts int           // attempts per request
	MaxBackoff  time.Duration // longest wait between attempts; 0 = the SDK's (20s)
}

// Check reports the first field of c that NewClient and NewUploader cannot
// use.
func (c Config) Check() error {
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

// NewClient loads the SDK configuration (credentials, shared config,
// CABundle) and returns a client for cfg. It makes no request.
func NewClient(ctx context.Context, cfg Config) (*s3.Client, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(cfg.Region),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = cfg.MaxAttempts
				if cfg.MaxBackoff > 0 {
					o.MaxBackoff = cfg.MaxBackoff
				}
				// A batch upload, or many parallel HEADs, must not give up
				// because earlier requests used up a shared retry budget.
				o.RateLimiter = ratelimit.None
			})
		}),
		// S3-compatible servers (Ceph RGW, older MinIO) reject the SDK's
		// default trailing checksums; sigv4 payload hashes still protect
		// every request, and callers verify sha256 digests themselves.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.HTTPClient == nil {
		// The SDK's client with a larger idle pool; CABundle still
		// applies to it.
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = maxIdleConnsPerHost
			tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdleConnsPerHost)
		})))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	if cfg.CABundle != "" {
		f, err := os.Open(cfg.CABundle)
		if err != nil {
			return nil, fmt.Errorf("ca bundle: %w", err)
		}
		defer f.Close()
		opts = append(opts, config.WithCustomCABundle(f))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		if cfg.HTTPClient != nil {
			// Set here, not in the loaded config, so that AWS_CA_BUNDLE
			// does not apply to a client the caller configured.
			o.HTTPClient = cfg.HTTPClient
		}
	}), nil
}

// NewUploader returns the transfer manager of client for cfg's part size
// and concurrency. It uploads in parts above the part size, and aborts a
// failed multipart upload even after its context is cancelled.
func NewUploader(client *s3.Client, cfg Config) *transfermanager.Client {
	return transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = cfg.PartSize
		o.MultipartUploadThreshold = cfg.PartSize
		o.Concurrency = cfg.Concurrency
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.FailTimeout = failTimeout
	})
}
