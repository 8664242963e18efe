// Package publish defines what publishers receive: built images whose
// artifacts are blobs in the cache. Backends: dir (the offline IMS S3
// layout), s3, oci and imsapi (registration with the IMS API); recipe
// publishes kiwi recipe archives.
package publish

import (
	"context"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// Image is a built image ready to publish.
type Image struct {
	Label   string                  // image block label
	Name    string                  // IMS name
	Arch    string                  // x86_64 | aarch64
	ID      string                  // IMS image id (uuid)
	Key     string                  // the cache key of the step that built it
	Created time.Time               // from SOURCE_DATE_EPOCH or the action result
	Outputs map[string]cache.Output // rootfs, kernel, initrd, boot_parameters
}

// Publisher publishes images.
type Publisher interface {
	Publish(ctx context.Context, store cache.Store, images []Image) error
}
