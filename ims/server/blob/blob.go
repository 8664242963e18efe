package blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/imsbuild/imsbuild/internal/s3client"
)

// MaxCopySize is the largest object S3 copies in one CopyObject.
const MaxCopySize = 5 << 30

// ErrNotFound means the object is not there.
var ErrNotFound = errors.New("object not found")

// ErrTooLarge means an object is larger than the caller reads.
var ErrTooLarge = errors.New("object too large")

// ClientError is an error S3 answered (a status other than 404), as
// opposed to S3 not answering at all. IMS answers the first with 422 and
// the second with 500.
type ClientError struct {
	Status int
	Err    error
}

func (e *ClientError) Error() string { return e.Err.Error() }
func (e *ClientError) Unwrap() error { return e.Err }

// Info is what a HEAD tells about an object.
type Info struct {
	Size     int64
	ETag     string // without quotes
	Metadata map[string]string
}

// Store is an S3 endpoint.
type Store struct {
	client *s3.Client
	// CopyThreshold is the size above which Move copies in parts;
	// CopyPartSize is the part size. Both default to MaxCopySize; tests
	// lower them.
	CopyThreshold int64
	CopyPartSize  int64
	// UploadPartSize is the part size of Upload, which uploads in one
	// part below it (default 64 MiB; tests lower it).
	UploadPartSize int64
}

// New returns a Store of client.
func New(client *s3.Client) *Store {
	return &Store{client: client, CopyThreshold: MaxCopySize, CopyPartSize: MaxCopySize, UploadPartSize: 64 << 20}
}

// ParseURL splits "s3://bucket/key" into bucket and key.
func ParseURL(raw string) (bucket, key string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("%q is not an s3://bucket/key URL", raw)
	}
	key = strings.TrimPrefix(u.Path, "/")
	if key == "" {
		return "", "", fmt.Errorf("%q has no object key", raw)
	}
	return u.Host, key, nil
}

// URL returns "s3://bucket/key".
func URL(bucket, key string) string { return "s3://" + bucket + "/" + key }

func classify(op, bucket, key string, err error) error {
	if err == nil {
		return nil
	}
	if s3client.IsNotFound(err) {
		return fmt.Errorf("%s s3://%s/%s: %w", op, bucket, key, ErrNotFound)
	}
	if _, status := s3client.APICode(err); status != 0 {
		return fmt.Errorf("%s s3://%s/%s: %w", op, bucket, key, &ClientError{Status: status, Err: err})
	}
	return fmt.Errorf("%s s3://%s/%s: %w", op, bucket, key, err)
}

// Head returns what S3 knows about an object.
func (s *Store) Head(ctx context.Context, bucket, key string) (Info, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return Info{}, classify("head", bucket, key, err)
	}
	return Info{
		Size:     aws.ToInt64(out.ContentLength),
		ETag:     strings.Trim(aws.ToString(out.ETag), `"`),
		Metadata: out.Metadata,
	}, nil
}

// Read returns an object's content, or ErrTooLarge when it has max bytes
// or more.
func (s *Store) Read(ctx context.Context, bucket, key string, max int64) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, classify("get", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, max))
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	if int64(len(data)) >= max {
		return nil, fmt.Errorf("get s3://%s/%s: %w (limit %d bytes)", bucket, key, ErrTooLarge, max)
	}
	return data, nil
}

// Get returns an object's content as a stream, with what a HEAD would
// tell. The caller closes it.
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

// Upload writes an object of size bytes from r with metadata, in parts
// above s3client.MinPartSize (so any size works), and returns its ETag.
func (s *Store) Upload(ctx context.Context, bucket, key string, r io.Reader, size int64, contentType string, metadata map[string]string) (string, error) {
	tm := s3client.NewUploader(s.client, s3client.Config{PartSize: s.UploadPartSize, Concurrency: 4})
	_, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key), Body: r, ContentLength: aws.Int64(size),
		ContentType: aws.String(contentType), Metadata: metadata,
	})
	if err != nil {
		return "", classify("upload", bucket, key, err)
	}
	// IMS takes the ETag from a HEAD after the upload.
	info, err := s.Head(ctx, bucket, key)
	if err != nil {
		return "", err
	}
	return info.ETag, nil
}

// Put writes an object.
func (s *Store) Put(ctx context.Context, bucket, key string, data []byte, contentType string) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType),
	})
	return classify("put", bucket, key, err)
}

// Delete removes an object; a missing object is no error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	if err = classify("delete", bucket, key, err); errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// EnsureBucket creates bucket unless it exists.
func (s *Store) EnsureBucket(ctx context.Context, bucket string) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket}); err == nil {
		return nil
	}
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

// Move copies bucket/src to bucket/dst and deletes src, as IMS's soft
// delete does. Metadata and content type go along.
func (s *Store) Move(ctx context.Context, bucket, src, dst string) error {
	info, err := s.Head(ctx, bucket, src)
	if err != nil {
		return err
	}
	if _, err := s.copyObject(ctx, bucket, src, dst, info.Size, nil); err != nil {
		return err
	}
	return s.Delete(ctx, bucket, src)
}

// newMeta is the content type and metadata a copy gets instead of its
// source's.
type newMeta struct {
	contentType string
	metadata    map[string]string
}

// copyObject copies bucket/src of size bytes to bucket/dst on the S3
// side, in parts above CopyThreshold, and returns the copy's ETag. With
// meta nil the copy keeps the source's content type and metadata.
func (s *Store) copyObject(ctx context.Context, bucket, src, dst string, size int64, meta *newMeta) (string, error) {
	if size > s.CopyThreshold {
		return s.copyParts(ctx, bucket, src, dst, size, meta)
	}
	in := &s3.CopyObjectInput{Bucket: &bucket, Key: &dst, CopySource: aws.String(copySource(bucket, src))}
	if meta != nil {
		in.MetadataDirective = types.MetadataDirectiveReplace
		in.ContentType, in.Metadata = aws.String(meta.contentType), meta.metadata
	}
	out, err := s.client.CopyObject(ctx, in)
	if err != nil {
		return "", classify("copy to "+dst+" from", bucket, src, err)
	}
	if out.CopyObjectResult != nil && out.CopyObjectResult.ETag != nil {
		return strings.Trim(*out.CopyObjectResult.ETag, `"`), nil
	}
	info, err := s.Head(ctx, bucket, dst)
	return info.ETag, err
}

func copySource(bucket, key string) string {
	return url.PathEscape(bucket) + "/" + strings.ReplaceAll(url.PathEscape(key), "%2F", "/")
}

// copyParts copies an object larger than one CopyObject allows with
// UploadPartCopy, aborting the upload on failure.
func (s *Store) copyParts(ctx context.Context, bucket, src, dst string, size int64, meta *newMeta) (etag string, err error) {
	if meta == nil {
		head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &src})
		if err != nil {
			return "", classify("head", bucket, src, err)
		}
		meta = &newMeta{contentType: aws.ToString(head.ContentType), metadata: head.Metadata}
	}
	up, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &bucket, Key: &dst, Metadata: meta.metadata, ContentType: aws.String(meta.contentType),
	})
	if err != nil {
		return "", classify("start multipart copy to", bucket, dst, err)
	}
	defer func() {
		if err != nil {
			abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = s.client.AbortMultipartUpload(abortCtx, &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &dst, UploadId: up.UploadId})
		}
	}()
	var parts []types.CompletedPart
	for n, off := int32(1), int64(0); off < size; n, off = n+1, off+s.CopyPartSize {
		end := min(off+s.CopyPartSize, size) - 1
		out, err := s.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket: &bucket, Key: &dst, UploadId: up.UploadId, PartNumber: aws.Int32(n),
			CopySource:      aws.String(copySource(bucket, src)),
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		})
		if err != nil {
			return "", classify(fmt.Sprintf("copy part %d to %s from", n, dst), bucket, src, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)})
	}
	out, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &bucket, Key: &dst, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return "", classify("complete multipart copy to", bucket, dst, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`), nil
}
