package s3

import (
	"fmt"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/s3client"
)

// wrap returns "op s3://bucket/key: err", wrapping cache.ErrNotFound too
// when S3 says the object is not there.
func (c *Cache) wrap(op, key string, err error) error {
	if s3client.IsNotFound(err) {
		return fmt.Errorf("%s %s: %w: %w", op, c.url(key), cache.ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", op, c.url(key), err)
}
