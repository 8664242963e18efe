package blob

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/internal/s3client"
)

// uploadPartSize is the part size (and multipart threshold) of Upload.
const uploadPartSize = 16 << 20

// Get opens an object for streaming; the caller closes the body. Info
// is what the GET answered (size, ETag, metadata).
func (s *Store) Get(ctx context.Context, bucket, key string) (io.ReadCloser, Info, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, Info{}, classify("get", bucket, key, err)
	}
	return out.Body, Info{
		Size:     aws.ToInt64(out.ContentLength),
		ETag:     strings.Trim(aws.ToString(out.ETag), `"`),
		Metadata: out.Metadata,
	}, nil
}

// Upload streams r (size bytes, or -1 when unknown) to an object with
// metadata, in parts above 16 MiB (so rootfs images above S3's 5 GiB
// single-PUT limit upload too). A failed multipart upload is aborted.
func (s *Store) Upload(ctx context.Context, bucket, key string, r io.Reader, size int64, contentType string, meta map[string]string) error {
	tm := s3client.NewUploader(s.client, s3client.Config{PartSize: uploadPartSize, Concurrency: 4})
	in := &transfermanager.UploadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: r,
		ContentType: aws.String(contentType), Metadata: meta,
	}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	if _, err := tm.UploadObject(ctx, in); err != nil {
		return fmt.Errorf("upload s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}
