package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/actions"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// Actions returns the action cache stored beside c's blobs
// (cache/internal/actions over objects under <prefix>/actions/ and
// <prefix>/steps/). It returns the interface so that *Cache satisfies
// tiered.Remote; it has no Lock (see cache.Locker).
func (c *Cache) Actions() cache.ActionCache { return actions.New(records{c}) }

// records is the actions.Backend of a Cache: one object per record.
type records struct{ c *Cache }

func (r records) key(kind actions.Kind, name string) (string, error) {
	if kind == actions.Action {
		return r.c.ActionKey(name), nil
	}
	file, err := record.StepFile(name)
	if err != nil {
		return "", err
	}
	return r.c.stepKey(file), nil
}

// Get reads a record, at most record.MaxSize bytes.
func (r records) Get(ctx context.Context, kind actions.Kind, name string) ([]byte, error) {
	key, err := r.key(kind, name)
	if err != nil {
		return nil, err
	}
	c := r.c
	out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, c.wrap("get", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, record.MaxSize+1))
	if err != nil {
		return nil, c.wrap("get", key, err)
	}
	if len(data) > record.MaxSize {
		return nil, fmt.Errorf("get %s: %w: larger than %d bytes", c.url(key), record.ErrUndecodable, record.MaxSize)
	}
	return data, nil
}

// Put writes a record in one PUT, so it appears whole, after checking (in
// parallel) that every blob of res is in the bucket.
func (r records) Put(ctx context.Context, kind actions.Kind, name string, data []byte, res *cache.ActionResult) error {
	key, err := r.key(kind, name)
	if err != nil {
		return err
	}
	c := r.c
	if res != nil {
		if _, err := c.StatAll(ctx, record.Refs(res)); err != nil {
			return err
		}
	}
	_, err = c.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(c.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/json"),
	})
	if err != nil {
		return c.wrap("put", key, err)
	}
	return nil
}

// Check HEADs every blob, in parallel.
func (r records) Check(ctx context.Context, refs []cache.Digest) error {
	_, err := r.c.StatAll(ctx, refs)
	return err
}
