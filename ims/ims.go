package ims

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// IMS media types of image artifacts.
const (
	MediaTypeRootfs         = "application/vnd.cray.image.rootfs.squashfs"
	MediaTypeKernel         = "application/vnd.cray.image.kernel"
	MediaTypeInitrd         = "application/vnd.cray.image.initrd"
	MediaTypeBootParameters = "application/vnd.cray.image.parameters.boot"
	MediaTypeDebugKernel    = "application/vnd.cray.image.debug.kernel" // optional; IMS jobs never write it
	MediaTypeRecipe         = "application/vnd.cray.recipe.tgz"
	MediaTypeManifest       = "application/json"
)

// Artifact names as used for S3 keys and OCI layer titles.
const (
	ArtifactRootfs         = "rootfs"
	ArtifactKernel         = "kernel"
	ArtifactInitrd         = "initrd"
	ArtifactBootParameters = "boot_parameters"
	ArtifactDebugKernel    = "debug_kernel"
	ManifestFile           = "manifest.json"
)

// SBOMFile is the image's SPDX 2.3 JSON software bill of materials: an
// output of every image step, published beside the artifacts under this
// name (<id>/sbom.spdx.json) but never listed in the IMS manifest, whose
// artifact types IMS validates strictly. MediaTypeSPDX is its media type
// and its OCI artifactType.
const (
	SBOMFile      = "sbom.spdx.json"
	MediaTypeSPDX = "application/spdx+json"
)

// ProvenanceFile is the image's signed SLSA provenance: a DSSE envelope of
// an in-toto statement, one line of JSON (package provenance). The engine
// makes it when the build has a signing key; it is published beside the
// artifacts like the SBOM (<id>/provenance.intoto.jsonl), never listed in
// the IMS manifest, and is no part of a cached step result.
// MediaTypeDSSE is its media type (the DSSE envelope's, as cosign's).
const (
	ProvenanceFile = "provenance.intoto.jsonl"
	MediaTypeDSSE  = "application/vnd.dsse.envelope.v1+json"
)

// ArtifactNames are the image artifacts in the order IMS writes them into a
// manifest (rootfs, kernel, initrd, [debug_kernel], [boot_parameters]).
func ArtifactNames() []string {
	return []string{ArtifactRootfs, ArtifactKernel, ArtifactInitrd, ArtifactDebugKernel, ArtifactBootParameters}
}

// KernelParametersFile is the file in an image's /boot that IMS packs as the
// boot_parameters artifact (the job's default kernel_parameters_file_name).
const KernelParametersFile = "kernel-parameters"

// LinuxDistributions are the linux_distribution values IMS accepts for a
// recipe record.
func LinuxDistributions() []string { return []string{"sles12", "sles15", "centos7"} }

// ManifestVersion is the only image manifest version IMS knows.
const ManifestVersion = "1.0"

// ManifestTimeLayout is the manifest's "created" format (no zone).
const ManifestTimeLayout = "2006-01-02 15:04:05"

// Link is an IMS ArtifactLinkRecord.
type Link struct {
	Path string `json:"path"`
	Etag string `json:"etag,omitempty"`
	Type string `json:"type"`
}

// Artifact is one entry of an image manifest.
type Artifact struct {
	Link Link   `json:"link"`
	Type string `json:"type"`
	MD5  string `json:"md5"`
}

// Manifest is an IMS image manifest.json.
type Manifest struct {
	Version   string     `json:"version"`
	Created   string     `json:"created"`
	Artifacts []Artifact `json:"artifacts"`
}

// MediaTypeOf returns the IMS media type of an artifact name.
func MediaTypeOf(name string) string {
	switch name {
	case ArtifactRootfs:
		return MediaTypeRootfs
	case ArtifactKernel:
		return MediaTypeKernel
	case ArtifactInitrd:
		return MediaTypeInitrd
	case ArtifactBootParameters:
		return MediaTypeBootParameters
	case ArtifactDebugKernel:
		return MediaTypeDebugKernel
	}
	return ""
}

// ArtifactOf returns the artifact name of an IMS media type, or "" for a
// type IMS does not define. A rootfs type may carry a suffix, as IMS finds
// the rootfs by prefix.
func ArtifactOf(mediaType string) string {
	if strings.HasPrefix(mediaType, MediaTypeRootfs) {
		return ArtifactRootfs
	}
	for _, name := range ArtifactNames() {
		if MediaTypeOf(name) == mediaType {
			return name
		}
	}
	return ""
}

// Validate checks m the way IMS does: version 1.0, exactly one rootfs, every
// artifact with an s3 link path and an md5.
func (m *Manifest) Validate() error {
	var errs []error
	if m.Version != ManifestVersion {
		errs = append(errs, fmt.Errorf("manifest version %q, want %q", m.Version, ManifestVersion))
	}
	if _, err := time.Parse(ManifestTimeLayout, m.Created); err != nil {
		errs = append(errs, fmt.Errorf("manifest created %q is not %q", m.Created, ManifestTimeLayout))
	}
	rootfs := 0
	for i, a := range m.Artifacts {
		if strings.HasPrefix(a.Type, MediaTypeRootfs) {
			rootfs++
		}
		if a.Link.Type != "s3" || !strings.HasPrefix(a.Link.Path, "s3://") {
			errs = append(errs, fmt.Errorf("artifact %d: link must be type s3 with an s3:// path, got %q %q", i, a.Link.Type, a.Link.Path))
		}
		if len(a.MD5) != 32 {
			errs = append(errs, fmt.Errorf("artifact %d: md5 %q is not 32 hex digits", i, a.MD5))
		}
		if a.Type == "" {
			errs = append(errs, fmt.Errorf("artifact %d: no type", i))
		}
	}
	if rootfs != 1 {
		errs = append(errs, fmt.Errorf("manifest has %d rootfs artifacts, want exactly 1", rootfs))
	}
	return errors.Join(errs...)
}

// ParseManifest decodes and validates a manifest.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse image manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid image manifest: %w", err)
	}
	return &m, nil
}

// ImageRecord is an IMS ImageRecord.
type ImageRecord struct {
	ID       string            `json:"id"`
	Created  string            `json:"created,omitempty"` // RFC 3339
	Name     string            `json:"name"`
	Link     *Link             `json:"link,omitempty"`
	Arch     string            `json:"arch,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// TemplateEntry is one template_dictionary item of a recipe.
type TemplateEntry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// RecipeRecord is an IMS RecipeRecord.
type RecipeRecord struct {
	ID                 string          `json:"id"`
	Created            string          `json:"created,omitempty"`
	Name               string          `json:"name"`
	RecipeType         string          `json:"recipe_type"`
	LinuxDistribution  string          `json:"linux_distribution"`
	Link               *Link           `json:"link,omitempty"`
	Arch               string          `json:"arch,omitempty"`
	RequireDKMS        bool            `json:"require_dkms"`
	TemplateDictionary []TemplateEntry `json:"template_dictionary,omitempty"`
}

// PublicKeyRecord is an IMS PublicKeyRecord.
type PublicKeyRecord struct {
	ID        string `json:"id"`
	Created   string `json:"created,omitempty"`
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// imageNamespace makes image IDs imsbuild's own UUID space.
var imageNamespace = uuid.MustParse("6d1c1f0e-5e0a-4f5e-9a3b-1b7a0f1e2d3c")

// ImageID derives a stable IMS image id (a UUID) from an image's name and the
// digests of its artifacts, so republishing the same content keeps its id.
func ImageID(name string, artifactDigests ...string) string {
	h := sha256.New()
	h.Write([]byte(name))
	for _, d := range artifactDigests {
		h.Write([]byte{0})
		h.Write([]byte(d))
	}
	return uuid.NewSHA1(imageNamespace, h.Sum(nil)).String()
}
