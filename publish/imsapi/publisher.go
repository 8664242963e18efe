package imsapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

var _ publish.Publisher = (*Publisher)(nil)

// LinkFunc returns the IMS link of an image's published manifest.json, as
// the S3 publisher wrote it: path s3://<bucket>/<prefix><id>/manifest.json
// and the object's etag.
type LinkFunc func(ctx context.Context, img publish.Image) (ims.Link, error)

// Publisher registers published images with IMS. The artifacts and the
// manifest must already be in S3 (IMS reads the manifest to check them), so
// it runs after an S3 publisher of the same images.
type Publisher struct {
	client  *Client
	linkFor LinkFunc
}

// NewPublisher returns a publisher registering images through client, each
// with the manifest link linkFor gives.
func NewPublisher(client *Client, linkFor LinkFunc) *Publisher {
	return &Publisher{client: client, linkFor: linkFor}
}

// Publish registers each image; store is not used (IMS only gets records).
// The first error stops it.
func (p *Publisher) Publish(ctx context.Context, _ publish.Blobs, images []publish.Image) error {
	_, err := p.Register(ctx, images)
	return err
}

// Register registers each image and returns the IMS records in order; an
// image registered before returns its existing record.
func (p *Publisher) Register(ctx context.Context, images []publish.Image) ([]ims.ImageRecord, error) {
	if p.client == nil || p.linkFor == nil {
		return nil, errors.New("publish ims: publisher without a client or link function")
	}
	recs := make([]ims.ImageRecord, 0, len(images))
	for _, img := range images {
		link, err := p.linkFor(ctx, img)
		if err != nil {
			return recs, fmt.Errorf("publish ims image %s (%s): manifest link: %w", img.Label, img.ID, err)
		}
		if link.Type == "" {
			link.Type = "s3"
		}
		rec, err := p.client.RegisterImage(ctx, ims.ImageRecord{Name: img.Name, Arch: img.Arch, Link: &link})
		if err != nil {
			return recs, fmt.Errorf("publish ims image %s (%s): %w", img.Label, img.ID, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}
