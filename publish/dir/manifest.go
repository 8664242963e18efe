package dir

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/publish"
)

// artifactOrder is the order of artifacts in a manifest.
func artifactOrder() []string {
	return ims.ArtifactNames()
}

// s3Link is the link of key in bucket, with etag.
func s3Link(bucket, key, etag string) ims.Link {
	return ims.Link{Path: "s3://" + bucket + "/" + key, Etag: etag, Type: "s3"}
}

// ManifestFor returns the IMS manifest of img as stored in bucket: the
// artifacts rootfs, kernel, initrd, debug_kernel and boot_parameters that
// img has, in that order (IMS's), linked as s3://<bucket>/<id>/<name> with their md5 as etag. Every
// artifact output needs its MD5; the manifest is validated.
func ManifestFor(img publish.Image, bucket string) (*ims.Manifest, error) {
	m := &ims.Manifest{
		Version:   ims.ManifestVersion,
		Created:   img.Created.UTC().Format(ims.ManifestTimeLayout),
		Artifacts: []ims.Artifact{},
	}
	for _, name := range artifactOrder() {
		o, ok := img.Outputs[name]
		if !ok {
			continue
		}
		if o.MD5 == "" {
			return nil, fmt.Errorf("manifest of %s: %s has no md5", img.ID, name)
		}
		m.Artifacts = append(m.Artifacts, ims.Artifact{
			Link: s3Link(bucket, img.ID+"/"+name, o.MD5),
			Type: ims.MediaTypeOf(name),
			MD5:  o.MD5,
		})
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest of %s: %w", img.ID, err)
	}
	return m, nil
}

// RecordFor returns the IMS ImageRecord of img whose manifest.json (with
// the bytes manifest) is stored in bucket.
func RecordFor(img publish.Image, bucket string, manifest []byte) *ims.ImageRecord {
	link := s3Link(bucket, img.ID+"/"+ims.ManifestFile, md5hex.Of(manifest))
	return &ims.ImageRecord{
		ID:      img.ID,
		Created: img.Created.UTC().Format(time.RFC3339),
		Name:    img.Name,
		Arch:    img.Arch,
		Link:    &link,
	}
}

// marshal is the canonical JSON of manifests and records: indented, with a
// final newline.
func marshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ManifestLink returns the IMS link of the published manifest of image id
// (etag: the md5 of its bytes, as a single-part upload of the file gives).
func (p *Publisher) ManifestLink(imageID string) (ims.Link, error) {
	data, err := os.ReadFile(filepath.Join(p.Path, Bucket, imageID, ims.ManifestFile))
	if err != nil {
		return ims.Link{}, fmt.Errorf("manifest of image %s: %w", imageID, err)
	}
	return s3Link(Bucket, imageID+"/"+ims.ManifestFile, md5hex.Of(data)), nil
}
