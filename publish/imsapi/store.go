package imsapi

import (
	"context"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/dir"
	"github.com/imsbuild/imsbuild/publish/s3"
)

// S3Store publishes to the bucket of p, where IMS reads them.
func S3Store(p *s3.Publisher) Store { return s3Store{p} }

type s3Store struct{ p *s3.Publisher }

func (s s3Store) Put(ctx context.Context, blobs publish.Blobs, img publish.Image) (ims.Link, error) {
	if err := s.p.Publish(ctx, blobs, []publish.Image{img}); err != nil {
		return ims.Link{}, err
	}
	return s.p.ManifestLink(ctx, img.ID)
}

func (s s3Store) Manifest(ctx context.Context, imageID string) (*ims.Manifest, error) {
	return s.p.Manifest(ctx, imageID)
}

func (s s3Store) ManifestPath(imageID string) string { return s.p.Link(imageID, ims.ManifestFile) }

// DirStore publishes to the directory of p. IMS checks the objects a link
// names, so this works only where an S3 endpoint serves p's boot-images
// folder as the bucket (versitygw's posix backend over the folder, say).
func DirStore(p *dir.Publisher) Store { return dirStore{p} }

type dirStore struct{ p *dir.Publisher }

func (s dirStore) Put(ctx context.Context, blobs publish.Blobs, img publish.Image) (ims.Link, error) {
	if err := s.p.Publish(ctx, blobs, []publish.Image{img}); err != nil {
		return ims.Link{}, err
	}
	return s.p.ManifestLink(img.ID)
}

func (s dirStore) Manifest(_ context.Context, imageID string) (*ims.Manifest, error) {
	return s.p.Manifest(imageID)
}

func (s dirStore) ManifestPath(imageID string) string {
	return "s3://" + dir.Bucket + "/" + imageID + "/" + ims.ManifestFile
}
