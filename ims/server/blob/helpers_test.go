package blob

import (
	"context"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func clientFor(_ context.Context, e *Embedded) (*s3.Client, error) {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(e.Endpoint), Region: e.Credentials.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(e.Credentials.AccessKey, e.Credentials.SecretKey, ""),
	}), nil
}

func statMode(path string) (os.FileMode, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}
