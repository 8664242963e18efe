// Package dir publishes images as an offline mirror of the IMS S3 layout:
// <path>/boot-images/<id>/{rootfs,kernel,initrd,manifest.json} and
// <path>/records/images/<id>.json.
package dir

import (
	"context"
	"errors"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/publish"
)

// Publisher writes to a directory.
type Publisher struct{ Path string }

// New returns a dir publisher writing under path.
func New(path string) *Publisher { return &Publisher{Path: path} }

// Publish writes each image atomically (temp dir + rename); an image already
// present with the same manifest is left as it is.
func (p *Publisher) Publish(ctx context.Context, store cache.Store, images []publish.Image) error {
	return errors.New("publish dir: not implemented")
}
