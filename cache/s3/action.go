package s3

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// maxRecordSize bounds the action and step records read into memory.
const maxRecordSize = 16 << 20

// Actions is the action cache of a Cache.
type Actions struct{ c *Cache }

// Actions returns the action cache stored beside c's blobs. It returns the
// interface so that *Cache satisfies tiered.Remote.
func (c *Cache) Actions() cache.ActionCache { return &Actions{c: c} }

// Get returns the result for key. A missing or undecodable record, or one
// whose blobs are not all in the bucket, is cache.ErrNotFound.
func (a *Actions) Get(ctx context.Context, key string) (*cache.ActionResult, error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("get action: %w", err)
	}
	data, err := a.c.getRecord(ctx, a.c.ActionKey(key))
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	rec, err := record.DecodeAction(data)
	if err != nil {
		return nil, fmt.Errorf("get action %s: %w: %w", key, err, cache.ErrNotFound)
	}
	if _, err := a.c.StatAll(ctx, record.Refs(&rec.Result)); err != nil {
		return nil, fmt.Errorf("get action %s: %w", key, err)
	}
	return &rec.Result, nil
}

// Put records res and the preimage of key, after checking (in parallel) that
// every blob of res is in the bucket.
func (a *Actions) Put(ctx context.Context, key string, preimage []byte, res *cache.ActionResult) error {
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("put action: %w", err)
	}
	if res == nil {
		return fmt.Errorf("put action %s: nil result", key)
	}
	rec := record.NewAction(res, preimage)
	data, err := record.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if _, err := a.c.StatAll(ctx, record.Refs(&rec.Result)); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	if err := a.c.putRecord(ctx, a.c.ActionKey(key), data); err != nil {
		return fmt.Errorf("put action %s: %w", key, err)
	}
	return nil
}

// Lock takes key's lock within this process (see the package doc).
func (a *Actions) Lock(ctx context.Context, key string) (func(), error) {
	if err := record.CheckKey(key); err != nil {
		return nil, fmt.Errorf("lock action: %w", err)
	}
	return a.c.locks.Lock(ctx, key)
}

// LastKey returns the key and preimage last recorded for step under
// <prefix>/steps/, or cache.ErrNotFound.
func (a *Actions) LastKey(ctx context.Context, step string) (string, []byte, error) {
	name, err := record.StepFile(step)
	if err != nil {
		return "", nil, err
	}
	data, err := a.c.getRecord(ctx, a.c.stepKey(name))
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w", step, err)
	}
	key, preimage, err := record.DecodeStep(data, step)
	if err != nil {
		return "", nil, fmt.Errorf("last key of %s: %w: %w", step, err, cache.ErrNotFound)
	}
	return key, preimage, nil
}

// SetLastKey records key and its preimage as the newest seen for step.
func (a *Actions) SetLastKey(ctx context.Context, step, key string, preimage []byte) error {
	name, err := record.StepFile(step)
	if err != nil {
		return err
	}
	if err := record.CheckKey(key); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	data, err := record.Marshal(record.NewStep(step, key, preimage))
	if err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	if err := a.c.putRecord(ctx, a.c.stepKey(name), data); err != nil {
		return fmt.Errorf("set last key of %s: %w", step, err)
	}
	return nil
}

// getRecord reads a small JSON object.
func (c *Cache) getRecord(ctx context.Context, key string) ([]byte, error) {
	out, err := c.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, c.wrap("get", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxRecordSize+1))
	if err != nil {
		return nil, c.wrap("get", key, err)
	}
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("get %s: %w: larger than %d bytes: %w", c.url(key), record.ErrUndecodable, maxRecordSize, cache.ErrNotFound)
	}
	return data, nil
}

// putRecord writes a small JSON object in one PUT, so it appears whole.
func (c *Cache) putRecord(ctx context.Context, key string, data []byte) error {
	_, err := c.client.PutObject(ctx, &s3.PutObjectInput{
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
