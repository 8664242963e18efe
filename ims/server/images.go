package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

const (
	mediaRootfs           = "application/vnd.cray.image.rootfs.squashfs"
	mediaManifest         = "application/vnd.cray.image.manifest"
	deletedManifestName   = "deleted_manifest.json"
	manifestVersion       = "1.0"
	manifestCreatedLayout = "2006-01-02 15:04:05"
)

var imageFields = []field{
	{name: "name", required: true, check: notBlank("name")},
	{name: "link", nullable: true, check: linkField},
	{name: "arch", check: archField},
	{name: "metadata", check: imageMetadata},
}

var imagePatchFields = []field{
	{name: "link", check: linkField},
	{name: "arch", check: archField},
	{name: "metadata", check: metadataPatch},
}

// manifest is an image manifest.json as IMS reads it: loosely, keeping
// what it does not look at.
type manifest struct {
	Version   string             `json:"version"`
	Created   string             `json:"created"`
	Artifacts []manifestArtifact `json:"artifacts"`
}

type manifestArtifact struct {
	Link *store.Link `json:"link"`
	MD5  string      `json:"md5"`
	Type string      `json:"type"`
}

func (s *Server) images() records[store.Image] {
	return records[store.Image]{
		live: s.st.Images, deleted: s.st.DeletedImages,
		deletedAt: func(r *store.Image) *string { return &r.Deleted },
		link:      func(r *store.Image) **store.Link { return &r.Link },
		hide:      s.softDeleteImageArtifacts,
		restore:   s.undeleteImageArtifacts,
		drop:      s.deleteImageArtifacts,
		noun:      "Image",
		check:     s.checkManifest,
	}
}

func (s *Server) imageKind() *kind {
	return kindOf(s, s.images(), s.createImage, s.patchImage)
}

// readManifest reads the manifest a link points at; a missing one is nil.
func (s *Server) readManifest(ctx context.Context, l *store.Link) (*manifest, string, string, error) {
	if l == nil {
		return nil, "", "", nil
	}
	bucket, key, err := blob.ParseURL(l.Path)
	if err != nil {
		return nil, "", "", nil
	}
	data, err := s.blobs.Read(ctx, bucket, key, manifestMaxSize)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, bucket, key, nil
	}
	if err != nil {
		return nil, "", "", err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		// Not a manifest: its artifacts are unknown; the object itself is
		// still moved or deleted.
		return &manifest{}, bucket, key, nil
	}
	return &m, bucket, key, nil
}

// sidecarKeys are where the SBOM and the signed provenance of the image
// whose manifest is at manifestKey are: sbom.spdx.json and
// provenance.intoto.jsonl beside a manifest.json, as imsbuild publishes them
// (the manifest does not list them). Other manifests have none (ok false):
// images registered by other tools need not keep their prefix to
// themselves. The keys are not cleaned: S3 keys are literal.
func sidecarKeys(manifestKey string) ([]string, bool) {
	dir, ok := strings.CutSuffix(manifestKey, "/"+ims.ManifestFile)
	if !ok || dir == "" {
		return nil, false
	}
	return []string{dir + "/" + ims.SBOMFile, dir + "/" + ims.ProvenanceFile}, true
}

// moveSidecars moves the SBOM and provenance beside the manifest at
// bucket/manifestKey under deleted/ (or, when restore and manifestKey is
// the deleted manifest, back) and returns the keys they were moved to.
func (s *Server) moveSidecars(ctx context.Context, bucket, manifestKey string, restore bool) ([]string, error) {
	srcs, ok := sidecarKeys(manifestKey)
	if !ok {
		return nil, nil
	}
	var moved []string
	for _, src := range srcs {
		dst := deletedKey(src)
		if restore {
			if dst, ok = strings.CutPrefix(src, "deleted/"); !ok {
				return moved, nil
			}
		}
		err := s.blobs.Move(ctx, bucket, src, dst)
		if errors.Is(err, blob.ErrNotFound) {
			continue
		}
		if err != nil {
			return moved, err
		}
		moved = append(moved, dst)
	}
	return moved, nil
}

// softDeleteImageArtifacts moves an image's artifacts, its SBOM and
// provenance and its manifest under deleted/ and writes deleted/<id>/deleted_manifest.json
// listing them (plus the manifest itself; the SBOM, as in the manifest,
// is not listed but found beside the deleted manifest); it returns the
// deleted record's link to it.
func (s *Server) softDeleteImageArtifacts(ctx context.Context, id string, l *store.Link) (*store.Link, error) {
	m, bucket, key, err := s.readManifest(ctx, l)
	if err != nil || m == nil {
		return l, err
	}
	dm := manifest{Version: manifestVersion, Created: s.now().UTC().Format(manifestCreatedLayout)}
	var moved []*store.Link
	rollback := func() {
		for _, ml := range moved {
			if _, err := s.moveLink(context.WithoutCancel(ctx), ml, true); err != nil {
				s.log.Error("soft delete rollback", "path", ml.Path, "err", err)
			}
		}
	}
	for _, a := range m.Artifacts {
		if a.Link == nil {
			continue
		}
		nl, err := s.moveLink(ctx, a.Link, false)
		if err != nil {
			rollback()
			return nil, err
		}
		moved = append(moved, nl)
		dm.Artifacts = append(dm.Artifacts, manifestArtifact{Link: nl, MD5: a.MD5, Type: a.Type})
	}
	sides, err := s.moveSidecars(ctx, bucket, key, false)
	for _, k := range sides {
		moved = append(moved, &store.Link{Path: blob.URL(bucket, k), Type: "s3"})
	}
	if err != nil {
		rollback()
		return nil, err
	}
	ml, err := s.moveLink(ctx, l, false)
	if err != nil {
		rollback()
		return nil, err
	}
	moved = append(moved, ml)
	dm.Artifacts = append(dm.Artifacts, manifestArtifact{Link: ml, Type: mediaManifest})
	data, _ := json.MarshalIndent(dm, "", "    ")
	dkey := "deleted/" + id + "/" + deletedManifestName
	if err := s.blobs.Put(ctx, bucket, dkey, data, contentJSON); err != nil {
		rollback()
		return nil, err
	}
	return &store.Link{Path: blob.URL(bucket, dkey), Etag: "", Type: "s3"}, nil
}

// isDeletedManifest reports whether a link is a deleted_manifest.json.
func isDeletedManifest(l *store.Link) bool {
	return l != nil && strings.HasSuffix(l.Path, "/"+deletedManifestName)
}

// undeleteImageArtifacts moves back what softDeleteImageArtifacts moved
// and returns the image's original manifest link.
func (s *Server) undeleteImageArtifacts(ctx context.Context, l *store.Link) (*store.Link, error) {
	if !isDeletedManifest(l) {
		return l, nil
	}
	m, bucket, key, err := s.readManifest(ctx, l)
	if err != nil || m == nil {
		return l, err
	}
	// The SBOM and provenance go back first, so that the restored
	// manifest finds them.
	for _, a := range m.Artifacts {
		if a.Type != mediaManifest || a.Link == nil {
			continue
		}
		if mb, mk, err := blob.ParseURL(a.Link.Path); err == nil {
			if _, err := s.moveSidecars(ctx, mb, mk, true); err != nil {
				return nil, err
			}
		}
	}
	var restored *store.Link
	for _, a := range m.Artifacts {
		if a.Link == nil {
			continue
		}
		nl, err := s.moveLink(ctx, a.Link, true)
		if err != nil {
			return nil, err
		}
		if a.Type == mediaManifest {
			restored = nl
		}
	}
	if err := s.blobs.Delete(ctx, bucket, key); err != nil {
		return nil, err
	}
	if restored == nil {
		return nil, nil
	}
	return restored, nil
}

// deleteImageArtifacts removes an image's artifacts, its SBOM and its
// manifest (or its deleted manifest, the SBOM beside the deleted
// manifest.json that one lists), each manifest after its SBOM.
func (s *Server) deleteImageArtifacts(ctx context.Context, l *store.Link) error {
	m, bucket, key, err := s.readManifest(ctx, l)
	if err != nil || m == nil {
		return err
	}
	for _, a := range m.Artifacts {
		if a.Type == mediaManifest && a.Link != nil && isDeletedManifest(l) {
			if err := s.deleteSidecars(ctx, a.Link.Path); err != nil {
				return err
			}
		}
		if err := s.deleteLink(ctx, a.Link); err != nil {
			return err
		}
	}
	if !isDeletedManifest(l) {
		if err := s.deleteSidecars(ctx, blob.URL(bucket, key)); err != nil {
			return err
		}
	}
	return s.deleteLink(ctx, l)
}

// deleteSidecars removes the SBOM and provenance beside the manifest at
// manifestURL, if any.
func (s *Server) deleteSidecars(ctx context.Context, manifestURL string) error {
	bucket, key, err := blob.ParseURL(manifestURL)
	if err != nil {
		return nil
	}
	keys, ok := sidecarKeys(key)
	if !ok {
		return nil
	}
	for _, k := range keys {
		if err := s.blobs.Delete(ctx, bucket, k); err != nil {
			return err
		}
	}
	return nil
}

// checkManifest is IMS's validate_image_manifest past the uniqueness of
// the path: S3 has the manifest (422); it is under 1 MiB (400), of
// version 1.0 (422); S3 has every artifact (422); exactly one is a rootfs
// (400).
func (s *Server) checkManifest(ctx context.Context, l *store.Link) error {
	info, err := s.headLink(ctx, l)
	if err != nil {
		return err
	}
	if info.Size >= manifestMaxSize {
		return &linkProblem{http.StatusBadRequest, fmt.Sprintf("The manifest %s is %d bytes; IMS reads manifests under 1 MiB.", l.Path, info.Size)}
	}
	bucket, key, _ := blob.ParseURL(l.Path)
	data, err := s.blobs.Read(ctx, bucket, key, manifestMaxSize)
	var ce *blob.ClientError
	switch {
	case errors.Is(err, blob.ErrTooLarge):
		return &linkProblem{http.StatusBadRequest, "The manifest " + l.Path + " is larger than 1 MiB."}
	case errors.Is(err, blob.ErrNotFound), errors.As(err, &ce):
		return &linkProblem{http.StatusUnprocessableEntity, "The manifest " + l.Path + " cannot be read."}
	case err != nil:
		return err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return &linkProblem{http.StatusUnprocessableEntity, "The manifest " + l.Path + " is not JSON."}
	}
	if m.Version != manifestVersion {
		return &linkProblem{http.StatusUnprocessableEntity, fmt.Sprintf("The manifest version %q is not supported; IMS reads version %q.", m.Version, manifestVersion)}
	}
	rootfs := 0
	for i, a := range m.Artifacts {
		if a.Link == nil || a.Link.Type != "s3" || a.Link.Path == "" {
			return &linkProblem{http.StatusUnprocessableEntity, fmt.Sprintf("Manifest artifact %d has no s3 link.", i)}
		}
		if _, err := s.headLink(ctx, a.Link); err != nil {
			return err
		}
		if strings.HasPrefix(a.Type, mediaRootfs) {
			rootfs++
		}
	}
	if rootfs != 1 {
		return &linkProblem{http.StatusBadRequest, fmt.Sprintf("The manifest lists %d rootfs artifacts (%s); IMS needs exactly one.", rootfs, mediaRootfs)}
	}
	return nil
}

func (s *Server) createImage(w http.ResponseWriter, r *http.Request) {
	createLinked(s, s.images(), w, r, imageFields, func(vals map[string]any) store.Image {
		rec := store.Image{
			ID: uuid.NewString(), Created: timestamp(s.now()), Name: vals["name"].(string),
			Arch: "x86_64", Metadata: map[string]string{},
		}
		if v, ok := vals["arch"]; ok {
			rec.Arch = v.(string)
		}
		if v, ok := vals["metadata"]; ok {
			rec.Metadata = v.(map[string]string)
		}
		return rec
	})
}

func (s *Server) patchImage(w http.ResponseWriter, r *http.Request, id string) {
	patchLinked(s, s.images(), w, r, id, imagePatchFields, func(rec *store.Image, vals map[string]any) {
		if v, ok := vals["arch"]; ok {
			rec.Arch = v.(string)
		}
		if v, ok := vals["metadata"]; ok {
			// A PATCH sets or removes one key; the map is copied, as the
			// record read from the store shares it.
			op := v.(map[string]any)
			md := make(map[string]string, len(rec.Metadata)+1)
			for k, v := range rec.Metadata {
				md[k] = v
			}
			key := op["key"].(string)
			if op["operation"] == "set" {
				val, _ := op["value"].(string)
				md[key] = val
			} else {
				delete(md, key)
			}
			rec.Metadata = md
		}
	})
}
