package s3

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/publish"
)

// remoteObject is what HEAD says about an object.
type remoteObject struct {
	size   int64
	etag   string // without quotes
	md5    string // metadata md5sum
	sha256 string // metadata sha256
	// image holds the x-shasta-ims-* metadata of an artifact (image name,
	// id and job id), nil for other objects.
	image map[string]string
}

// matches reports whether o holds what want describes: the same content
// and, for an artifact, the same IMS image metadata.
func (o *remoteObject) matches(want remoteObject) bool {
	if o.size != want.size || o.sha256 != want.sha256 || !strings.EqualFold(o.md5, want.md5) {
		return false
	}
	for k, v := range want.image {
		if o.image[k] != v {
			return false
		}
	}
	return true
}

// metadata is the user metadata to upload with o.
func (o *remoteObject) metadata() map[string]string {
	m := map[string]string{MetaMD5: o.md5, MetaSHA256: o.sha256}
	for k, v := range o.image {
		m[k] = v
	}
	return m
}

// head returns the object at key, or nil when there is none.
func (p *Publisher) head(ctx context.Context, key string) (*remoteObject, error) {
	return p.headIn(ctx, p.cfg.Bucket, key)
}

// headIn is head in any bucket.
func (p *Publisher) headIn(ctx context.Context, bucket, key string) (*remoteObject, error) {
	out, err := p.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		if s3client.IsNotFound(err) {
			return nil, nil
		}
		return nil, p.wrapIn("head", bucket, key, err)
	}
	return objectOf(aws.ToInt64(out.ContentLength), aws.ToString(out.ETag), out.Metadata), nil
}

// objectOf reads the size, etag and checksum metadata of a HEAD or GET.
func objectOf(size int64, etag string, meta map[string]string) *remoteObject {
	o := &remoteObject{size: size, etag: strings.Trim(etag, `"`)}
	for k, v := range meta { // keys come back lowercased, or not
		switch strings.ToLower(k) {
		case MetaMD5:
			o.md5 = v
		case MetaSHA256:
			o.sha256 = v
		case MetaImageName, MetaImageID, MetaJobID:
			if o.image == nil {
				o.image = map[string]string{}
			}
			o.image[strings.ToLower(k)] = v
		}
	}
	return o
}

// putArtifact uploads a blob of img to key unless the object already holds
// it (with img's metadata), then checks it with a HEAD, and returns what
// HEAD says.
func (p *Publisher) putArtifact(ctx context.Context, blobs publish.Blobs, img publish.Image, key, name string, out publish.Artifact) (*remoteObject, error) {
	want := remoteObject{size: out.Size, sha256: out.Digest.Encoded(), md5: strings.ToLower(out.MD5), image: imageMetadata(img)}
	have, err := p.head(ctx, key)
	if err != nil {
		return nil, err
	}
	if want.md5 == "" {
		// Only an upload computes it cheaply; a present object has it.
		if have != nil && len(have.md5) == 32 {
			if want.md5 = have.md5; have.matches(want) {
				return have, nil
			}
		}
		if want.md5, err = blobMD5(ctx, blobs, out.Digest); err != nil {
			return nil, p.wrap("put", key, fmt.Errorf("md5 of %s: %w", out.Digest, err))
		}
	}
	if have != nil && have.matches(want) {
		return have, nil
	}
	open := func(ctx context.Context) (io.ReadCloser, error) {
		rc, err := blobs.Open(ctx, out.Digest)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", out.Digest, err)
		}
		return rc, nil
	}
	contentType := out.MediaType
	if contentType == "" {
		contentType = ims.MediaTypeOf(name)
	}
	return p.putFrom(ctx, p.cfg.Bucket, key, contentType, want, open)
}

// putFrom uploads the content open returns to bucket/key, unconditionally,
// then checks the object with a HEAD and returns what HEAD says.
func (p *Publisher) putFrom(ctx context.Context, bucket, key, contentType string, want remoteObject, open func(context.Context) (io.ReadCloser, error)) (*remoteObject, error) {
	if err := p.upload(ctx, bucket, key, contentType, want, open); err != nil {
		return nil, err
	}
	have, err := p.headIn(ctx, bucket, key)
	switch {
	case err != nil:
		return nil, err
	case have == nil:
		return nil, p.wrapIn("verify", bucket, key, errors.New("object missing after upload"))
	case !have.matches(want):
		return nil, p.wrapIn("verify", bucket, key, fmt.Errorf("object has size %d md5sum %q sha256 %q, want %d %q %q",
			have.size, have.md5, have.sha256, want.size, want.md5, want.sha256))
	}
	return have, nil
}

// upload streams the content to bucket/key; the md5 and size are checked
// while reading (Blobs.Open checks the sha256), so bad content aborts the
// upload.
func (p *Publisher) upload(ctx context.Context, bucket, key, contentType string, want remoteObject, open func(context.Context) (io.ReadCloser, error)) error {
	rc, err := open(ctx)
	if err != nil {
		return p.wrapIn("put", bucket, key, err)
	}
	defer rc.Close()
	body := &checkReader{r: rc, h: md5.New(), size: want.size, md5: want.md5}
	_, err = p.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:        aws.String(bucket),
		Key:           aws.String(key),
		Body:          body,
		ContentLength: aws.Int64(want.size),
		ContentType:   aws.String(contentType),
		Metadata:      want.metadata(),
	})
	if err != nil {
		return p.wrapIn("put", bucket, key, err)
	}
	return nil
}

// checkReader fails at EOF when the content's size or md5 is not the one
// the upload announced.
type checkReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	size int64
	md5  string
}

func (c *checkReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	c.n += int64(n)
	if c.n > c.size {
		return n, fmt.Errorf("blob is larger than its recorded size %d", c.size)
	}
	if err == io.EOF {
		if c.n != c.size {
			return n, fmt.Errorf("blob has %d bytes, its recorded size is %d", c.n, c.size)
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.md5 {
			return n, fmt.Errorf("blob md5 is %s, its recorded md5 is %s: %w", got, c.md5, publish.ErrCorrupt)
		}
	}
	return n, err
}

func blobMD5(ctx context.Context, blobs publish.Blobs, d digest.Digest) (string, error) {
	rc, err := blobs.Open(ctx, d)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return md5hex.OfReader(rc)
}
