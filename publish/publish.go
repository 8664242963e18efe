// Package publish defines what publishers receive: built images whose
// artifacts are blobs they read through Blobs. Backends: dir (the offline
// IMS S3 layout), s3, oci and imsapi (registration with the IMS API);
// recipe publishes kiwi recipe archives.
//
// Publishers do not know the cache: the engine adapts its store to Blobs,
// so a publisher can be tested with a small fake (publishtest) and a cache
// backend can change without touching them.
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// ErrNotFound reports an artifact that Blobs does not have.
var ErrNotFound = errors.New("artifact not found")

// ErrCorrupt reports an artifact whose content does not match its digest,
// size or md5.
var ErrCorrupt = errors.New("artifact corrupt")

// Artifact is one built file of an image, a blob in Blobs.
type Artifact struct {
	Digest    digest.Digest // sha256
	Size      int64
	MediaType string // "" = the IMS type of its name (ims.MediaTypeOf)
	MD5       string // hex; IMS manifests need it; "" = not known yet
}

// Image is a built image ready to publish.
type Image struct {
	Label   string              // image block label
	Name    string              // IMS name
	Arch    string              // x86_64 | aarch64
	ID      string              // IMS image id (uuid): the S3 key prefix
	Key     string              // the cache key of the step that built it
	Created time.Time           // from SOURCE_DATE_EPOCH or the action result
	Outputs map[string]Artifact // rootfs, kernel, initrd, boot_parameters; sbom.spdx.json and provenance.intoto.jsonl beside them (others are not published)
	// JobID is the IMS job that built the image ("" outside a job); S3
	// publishers set it as x-shasta-ims-job-id, as IMS's job helper does.
	JobID string
}

// Blobs is where publishers read artifacts from. Open and Stat are all a
// publisher needs; Path lets one skip the copy through user space when the
// blob is a local file (sendfile to a registry, a reflink into a directory).
type Blobs interface {
	// Open returns the content of d; reading it to EOF verifies the digest,
	// failing with an error wrapping ErrCorrupt on a mismatch. A blob it
	// does not have is an error wrapping ErrNotFound.
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
	// Stat returns the size of d, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	// Path returns a local file holding d, or false when d is not one
	// (a remote blob not downloaded yet). The file is not verified: the
	// caller must only read it, and must check the content itself (a
	// registry checks every digest) or fall back to Open.
	Path(ctx context.Context, d digest.Digest) (string, bool)
}

// Publisher publishes images.
type Publisher interface {
	Publish(ctx context.Context, blobs Blobs, images []Image) error
}

// CheckDigest rejects a digest that is not a well-formed sha256 digest,
// the only kind blobs have.
func CheckDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("invalid digest %q: not sha256", d)
	}
	return nil
}
