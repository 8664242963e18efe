package s3

import (
	"context"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/cache"
)

// MetaSHA256 is the user metadata key holding a blob's hex sha256. Put
// skips an upload only when the object there carries it; objects synced
// from a local cache lack it and are simply uploaded again by Put.
const MetaSHA256 = "sha256"

// headBlob returns the size of blob d and whether its object carries d's
// sha256 metadata, or an error wrapping cache.ErrNotFound.
func (c *Cache) headBlob(ctx context.Context, d cache.Digest) (int64, bool, error) {
	key := c.BlobKey(d)
	out, err := c.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if err != nil {
		return 0, false, c.wrap("head", key, err)
	}
	trusted := false
	for k, v := range out.Metadata { // keys come back lowercased, or not
		if strings.EqualFold(k, MetaSHA256) {
			trusted = v == d.Hex()
		}
	}
	return aws.ToInt64(out.ContentLength), trusted, nil
}

// uploadBlob streams r to the object of blob d, in parts above the part
// size; size is its length, or -1.
func (c *Cache) uploadBlob(ctx context.Context, r io.Reader, d cache.Digest, size int64) error {
	key := c.BlobKey(d)
	in := &transfermanager.UploadObjectInput{
		Bucket:      aws.String(c.bucket),
		Key:         aws.String(key),
		Body:        r,
		ContentType: aws.String("application/octet-stream"),
		Metadata:    map[string]string{MetaSHA256: d.Hex()},
	}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	if _, err := c.tm.UploadObject(ctx, in); err != nil {
		return c.wrap("put", key, err)
	}
	return nil
}

// getBlob returns the body of blob d and its length, -1 when unknown.
func (c *Cache) getBlob(ctx context.Context, d cache.Digest) (io.ReadCloser, int64, error) {
	key := c.BlobKey(d)
	out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, 0, c.wrap("get", key, err)
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return out.Body, size, nil
}
