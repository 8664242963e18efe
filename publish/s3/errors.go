package s3

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/imsbuild/imsbuild/internal/s3client"
)

// Errors that callers classify with errors.Is; the returned errors also wrap
// the SDK's error.
var (
	ErrAccessDenied = errors.New("access denied")
	ErrNoSuchBucket = errors.New("bucket does not exist")
	ErrUnreachable  = errors.New("endpoint unreachable")
	ErrNotFound     = errors.New("object does not exist")
)

// opError is "op s3://bucket/key: hint: sdk error".
type opError struct {
	op, url string
	kind    error // one of the Err* above, or nil
	hint    string
	err     error
}

func (e *opError) Error() string {
	if e.hint == "" {
		return fmt.Sprintf("%s %s: %v", e.op, e.url, e.err)
	}
	return fmt.Sprintf("%s %s: %s: %v", e.op, e.url, e.hint, e.err)
}

func (e *opError) Unwrap() []error {
	if e.kind == nil {
		return []error{e.err}
	}
	return []error{e.kind, e.err}
}

// wrap names the operation and the object and explains the common failures.
func (p *Publisher) wrap(op, key string, err error) error {
	return p.wrapIn(op, p.cfg.Bucket, key, err)
}

// wrapIn is wrap for an object of any bucket.
func (p *Publisher) wrapIn(op, bucket, key string, err error) error {
	url := "s3://" + bucket
	if key != "" {
		url += "/" + key
	}
	e := &opError{op: op, url: url, err: err}
	code, status := s3client.APICode(err)
	switch {
	case code == "NoSuchBucket" || key == "" && status == 404:
		e.kind, e.hint = ErrNoSuchBucket, fmt.Sprintf("bucket %q does not exist (create it or fix the bucket name)", bucket)
	case s3client.IsNotFound(err):
		e.kind, e.hint = ErrNotFound, "no such object"
	case status == 403 || code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch":
		e.kind, e.hint = ErrAccessDenied, "access denied (check the credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, and the bucket policy)"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.kind, e.hint = ErrUnreachable, fmt.Sprintf("connection refused by %s (is the endpoint right and the server up?)", p.endpoint())
	case isDNSError(err):
		e.kind, e.hint = ErrUnreachable, fmt.Sprintf("cannot resolve the host of %s (check the endpoint)", p.endpoint())
	}
	return e
}

func (p *Publisher) endpoint() string {
	if p.cfg.Endpoint == "" {
		return "the AWS S3 endpoint of region " + p.cfg.Region
	}
	return p.cfg.Endpoint
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}
