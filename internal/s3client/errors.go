package s3client

import (
	"errors"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// APICode returns the S3 error code and HTTP status of err, if any.
func APICode(err error) (code string, status int) {
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

// IsNotFound reports whether S3 says the object (or bucket) of err is not
// there.
func IsNotFound(err error) bool {
	code, status := APICode(err)
	return status == 404 || code == "NotFound" || code == "NoSuchKey"
}
