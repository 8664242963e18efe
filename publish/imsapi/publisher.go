package imsapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/ctxio"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/publish"
)

var _ publish.Publisher = (*Publisher)(nil)

// Store is where IMS reads the artifacts of an image: the bucket of an s3
// publish (S3Store), or a directory that an S3 endpoint serves as the
// bucket (DirStore).
type Store interface {
	// Put publishes img's artifacts and then its manifest.json under the
	// prefix img.ID, and returns the manifest's link.
	Put(ctx context.Context, blobs publish.Blobs, img publish.Image) (ims.Link, error)
	// Manifest returns the manifest.json published for image id, or nil
	// when there is none.
	Manifest(ctx context.Context, imageID string) (*ims.Manifest, error)
	// ManifestPath is the link path of image id's manifest.json.
	ManifestPath(imageID string) string
}

// StoreFunc returns the Store of an image.
type StoreFunc func(ctx context.Context, img publish.Image) (Store, error)

// cleanupTimeout bounds the removal of a record whose artifacts could not
// be published, which runs even when the publish was cancelled.
const cleanupTimeout = 30 * time.Second

// Publisher registers images with IMS the way IMS's own job helper does:
// it creates the image record first, publishes the artifacts and the
// manifest under the record's id (so the record id is the S3 prefix), and
// then sets the record's link. An image that has a record already (same
// name and arch, linked to a manifest under its own id that lists the same
// artifacts by md5) is not published again.
type Publisher struct {
	client   *Client
	storeFor StoreFunc
}

// NewPublisher returns a publisher registering images through client and
// publishing their artifacts to the store storeFor gives.
func NewPublisher(client *Client, storeFor StoreFunc) *Publisher {
	return &Publisher{client: client, storeFor: storeFor}
}

// Publish registers each image; the first error stops it.
func (p *Publisher) Publish(ctx context.Context, blobs publish.Blobs, images []publish.Image) error {
	_, err := p.Register(ctx, blobs, images)
	return err
}

// Register registers each image and returns the IMS records in order. An
// image whose publication fails leaves no record: the one created for it
// is deleted again.
func (p *Publisher) Register(ctx context.Context, blobs publish.Blobs, images []publish.Image) ([]ims.ImageRecord, error) {
	if p.client == nil || p.storeFor == nil {
		return nil, errors.New("publish ims: publisher without a client or store")
	}
	recs := make([]ims.ImageRecord, 0, len(images))
	for _, img := range images {
		rec, err := p.register(ctx, blobs, img)
		if err != nil {
			return recs, fmt.Errorf("publish ims image %s (%s): %w", img.Label, img.Name, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

func (p *Publisher) register(ctx context.Context, blobs publish.Blobs, img publish.Image) (ims.ImageRecord, error) {
	store, err := p.storeFor(ctx, img)
	if err != nil {
		return ims.ImageRecord{}, err
	}
	if img.Outputs, err = withMD5(ctx, blobs, img.Outputs); err != nil {
		return ims.ImageRecord{}, err
	}
	if rec, err := p.find(ctx, store, img); err != nil || rec != nil {
		if rec == nil {
			return ims.ImageRecord{}, err
		}
		return *rec, err
	}
	rec, err := p.client.CreateImage(ctx, img.Name, img.Arch)
	if err != nil {
		return ims.ImageRecord{}, err
	}
	img.ID = rec.ID
	link, err := store.Put(ctx, blobs, img)
	if err == nil {
		rec, err = p.client.LinkImage(ctx, img.ID, link)
	}
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := p.client.DeleteImage(dctx, img.ID); derr != nil {
			return ims.ImageRecord{}, errors.Join(err, fmt.Errorf("and the record it leaves: %w", derr))
		}
		return ims.ImageRecord{}, err
	}
	return rec, nil
}

// find returns the record img has already, or nil: one with img's name and
// arch, linked to the manifest under its own id, which lists img's
// artifacts (by type and md5) and no others.
func (p *Publisher) find(ctx context.Context, store Store, img publish.Image) (*ims.ImageRecord, error) {
	var candidates []ims.ImageRecord
	err := p.client.Images(ctx, func(r *ims.ImageRecord) bool {
		if r.Name == img.Name && archOf(r.Arch) == archOf(img.Arch) && checkID(r.ID) == nil &&
			r.Link != nil && r.Link.Path == store.ManifestPath(r.ID) {
			candidates = append(candidates, *r)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	want := artifactMD5s(img)
	for _, r := range candidates {
		m, err := store.Manifest(ctx, r.ID)
		if err != nil {
			return nil, fmt.Errorf("manifest of image %s: %w", r.ID, err)
		}
		if m != nil && sameArtifacts(m, want) {
			return &r, nil
		}
	}
	return nil, nil
}

// archOf is arch with IMS's default.
func archOf(arch string) string {
	if arch == "" {
		return "x86_64"
	}
	return arch
}

// artifactMD5s maps the media type of each of img's artifacts to its md5.
func artifactMD5s(img publish.Image) map[string]string {
	res := map[string]string{}
	for name, o := range img.Outputs {
		if t := ims.MediaTypeOf(name); t != "" {
			res[t] = strings.ToLower(o.MD5)
		}
	}
	return res
}

func sameArtifacts(m *ims.Manifest, want map[string]string) bool {
	if len(m.Artifacts) != len(want) {
		return false
	}
	for _, a := range m.Artifacts {
		if md5, ok := want[a.Type]; !ok || md5 != strings.ToLower(a.MD5) {
			return false
		}
	}
	return true
}

// withMD5 returns a copy of outs where every artifact's missing md5 is
// computed by streaming its blob.
func withMD5(ctx context.Context, blobs publish.Blobs, outs map[string]publish.Artifact) (map[string]publish.Artifact, error) {
	res := make(map[string]publish.Artifact, len(outs))
	for name, o := range outs {
		if o.MD5 == "" && ims.MediaTypeOf(name) != "" {
			rc, err := blobs.Open(ctx, o.Digest)
			if err != nil {
				return nil, fmt.Errorf("md5 of %s: %w", name, err)
			}
			o.MD5, err = md5hex.OfReader(ctxio.Reader(ctx, rc))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("md5 of %s: %w", name, err)
			}
		}
		res[name] = o
	}
	return res, nil
}
