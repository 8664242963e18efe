package s3

import (
	"errors"
	"fmt"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/imsbuild/imsbuild/cache"
)

// apiCode returns the S3 error code and HTTP status of err, if any.
func apiCode(err error) (string, int) {
	var code string
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return code, re.HTTPStatusCode()
	}
	return code, 0
}

func isNotFound(err error) bool {
	code, status := apiCode(err)
	return status == 404 || code == "NotFound" || code == "NoSuchKey"
}

// wrap returns "op s3://bucket/key: err", wrapping cache.ErrNotFound too
// when S3 says the object is not there.
func (c *Cache) wrap(op, key string, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s %s: %w: %w", op, c.url(key), cache.ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, c.url(key), err)
}
