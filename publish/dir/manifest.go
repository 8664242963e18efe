package dir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/md5hex"
	"github.com/imsbuild/imsbuild/publish"
)

// fileOrder is the order files of an image are written in: the
// artifacts, then the SBOM and the signed provenance, which the manifest
// does not list (the manifest is written last, after all of them).
func fileOrder() []string {
	return append(ims.ArtifactNames(), ims.SBOMFile, ims.ProvenanceFile)
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
	for _, name := range ims.ArtifactNames() { // IMS's order
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

// Record is what publish "dir" writes to records/images/<id>.json: the body
// of the IMS image create (POST /images) that registers the published image
// once its folder is in the bucket. IMS assigns id and created itself and
// answers 422 to a POST that has them, so the record has neither; the file's
// name is the image's S3 prefix.
type Record struct {
	Name string    `json:"name"`
	Arch string    `json:"arch,omitempty"`
	Link *ims.Link `json:"link"`
}

// RecordFor returns the Record of img whose manifest.json (with the bytes
// manifest) is stored in bucket.
func RecordFor(img publish.Image, bucket string, manifest []byte) *Record {
	link := s3Link(bucket, img.ID+"/"+ims.ManifestFile, md5hex.Of(manifest))
	return &Record{Name: img.Name, Arch: img.Arch, Link: &link}
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

// Manifest returns the manifest.json published for image id, or nil when
// there is none.
func (p *Publisher) Manifest(imageID string) (*ims.Manifest, error) {
	if err := checkID(imageID); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(p.Path, Bucket, imageID, ims.ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ims.ParseManifest(data)
}
