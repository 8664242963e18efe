package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/publish"
)

// artifactNames lists the image outputs the manifest lists, in its order.
var artifactNames = ims.ArtifactNames()

// uploadOrder is the order outputs are uploaded in: the artifacts, then the
// SBOM and the signed provenance, which the manifest does not list; the
// manifest comes last, so a reader that finds it finds them too.
var uploadOrder = append(ims.ArtifactNames(), ims.SBOMFile, ims.ProvenanceFile)

// User metadata keys of published objects. Every object has MetaMD5 (IMS
// reads it) and MetaSHA256; artifacts also have the x-shasta-ims-* keys of
// IMS's job helper: the image name and id, and the job id when a job built
// the image.
const (
	MetaMD5       = "md5sum"
	MetaSHA256    = "sha256"
	MetaImageName = "x-shasta-ims-image-name"
	MetaImageID   = "x-shasta-ims-image-id"
	MetaJobID     = "x-shasta-ims-job-id"
)

// imageMetadata returns the x-shasta-ims-* metadata of img's artifacts;
// like IMS's helper, it leaves out the keys whose value is empty.
func imageMetadata(img publish.Image) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{MetaImageName: img.Name, MetaImageID: img.ID, MetaJobID: img.JobID} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

var _ publish.Publisher = (*Publisher)(nil)

// Publish uploads each image's artifacts, its SBOM (<id>/sbom.spdx.json),
// its signed provenance (<id>/provenance.intoto.jsonl) if it has one, and
// then its manifest.json. Images
// are published one after another; the first error stops it. An image whose
// upload failed has no new manifest.
func (p *Publisher) Publish(ctx context.Context, blobs publish.Blobs, images []publish.Image) error {
	for _, img := range images {
		if err := checkImage(img); err != nil {
			return err
		}
	}
	if _, err := p.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(p.cfg.Bucket)}); err != nil {
		return fmt.Errorf("publish s3: %w", p.wrap("head bucket", "", err))
	}
	for _, img := range images {
		if err := p.publishImage(ctx, blobs, img); err != nil {
			return fmt.Errorf("publish s3 image %s (%s): %w", img.Label, img.ID, err)
		}
	}
	return nil
}

// checkImage rejects an image IMS would not accept, before any upload.
func checkImage(img publish.Image) error {
	if img.ID == "" {
		return fmt.Errorf("publish s3 image %s: no image id", img.Label)
	}
	if _, ok := img.Outputs[ims.ArtifactRootfs]; !ok {
		return fmt.Errorf("publish s3 image %s (%s): no rootfs output", img.Label, img.ID)
	}
	for _, name := range uploadOrder {
		if o, ok := img.Outputs[name]; ok {
			if err := publish.CheckDigest(o.Digest); err != nil {
				return fmt.Errorf("publish s3 image %s (%s): %s: %w", img.Label, img.ID, name, err)
			}
		}
	}
	return nil
}

func (p *Publisher) publishImage(ctx context.Context, blobs publish.Blobs, img publish.Image) error {
	m := ims.Manifest{
		Version: ims.ManifestVersion,
		Created: img.Created.UTC().Format(ims.ManifestTimeLayout),
	}
	for _, name := range uploadOrder {
		out, ok := img.Outputs[name]
		if !ok {
			continue
		}
		key := p.Key(img.ID, name)
		obj, err := p.putArtifact(ctx, blobs, img, key, name, out)
		if err != nil {
			return err
		}
		if name == ims.SBOMFile || name == ims.ProvenanceFile {
			continue // beside the image, not an IMS artifact
		}
		m.Artifacts = append(m.Artifacts, ims.Artifact{
			Link: ims.Link{Path: p.Link(img.ID, name), Etag: obj.etag, Type: "s3"},
			Type: ims.MediaTypeOf(name),
			MD5:  obj.md5,
		})
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("manifest %s: %w", p.Link(img.ID, ims.ManifestFile), err)
	}
	data, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	return p.putManifest(ctx, p.Key(img.ID, ims.ManifestFile), append(data, '\n'))
}

// putManifest writes data unless the object already holds it.
func (p *Publisher) putManifest(ctx context.Context, key string, data []byte) error {
	sum := sha256.Sum256(data)
	want := remoteObject{size: int64(len(data)), sha256: hex.EncodeToString(sum[:]), md5: md5hex.Of(data)}
	if have, err := p.head(ctx, key); err != nil {
		return err
	} else if have != nil && have.matches(want) {
		return nil
	}
	_, err := p.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(p.cfg.Bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String(ims.MediaTypeManifest),
		Metadata:      map[string]string{MetaMD5: want.md5, MetaSHA256: want.sha256},
	})
	if err != nil {
		return p.wrap("put", key, err)
	}
	return nil
}
