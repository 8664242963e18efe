package sbom

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
)

// cdxVersion is the CycloneDX version written: 1.6, which current scanners
// (Trivy, Grype) read.
const cdxVersion = cdx.SpecVersion1_6

// cdxNamespace seeds the BOM's serial number (a name-based UUID of the
// content), so that a rebuild gives the same serial.
var cdxNamespace = uuid.MustParse("6d3c1d0e-8d7e-4a59-9f1c-0b1e0e5a1a6b")

var cdxHashes = map[string]cdx.HashAlgorithm{
	"sha256": cdx.HashAlgoSHA256, "sha512": cdx.HashAlgoSHA512, "sha1": cdx.HashAlgoSHA1, "md5": cdx.HashAlgoMD5,
}

// CycloneDX returns the CycloneDX 1.6 BOM of inv: the image as the
// metadata component (an operating system) and one library component per
// package, with the same identifiers, package URLs and licenses as the SPDX
// document. Like SPDX it has no random part.
func (inv *Inventory) CycloneDX(d Document) (*cdx.BOM, error) {
	doc, err := inv.SPDX(d) // validates d and the packages, and names the content
	if err != nil {
		return nil, err
	}
	created := d.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid.NewSHA1(cdxNamespace, []byte(doc.DocumentNamespace)).String()
	tool, toolVersion, _ := strings.Cut(d.Tool, "-")
	bom.Metadata = &cdx.Metadata{
		Timestamp: created.UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{
			{Type: cdx.ComponentTypeApplication, Name: tool, Version: toolVersion},
		}},
		Component: &cdx.Component{BOMRef: string(rootID), Type: cdx.ComponentTypeOS, Name: d.Name, Version: d.Version},
	}
	// The SPDX packages, after the root, are the inventory's in order and
	// without duplicates.
	components := make([]cdx.Component, 0, len(doc.Packages)-1)
	licenses := map[string]bool{}
	seen := map[string]bool{}
	for _, p := range inv.Packages {
		id := string(packageID(p))
		if seen[id] {
			continue
		}
		seen[id] = true
		c := cdx.Component{
			BOMRef:     id,
			Type:       cdx.ComponentTypeLibrary,
			Name:       p.Name,
			Version:    p.FullVersion(),
			PackageURL: inv.purl(p),
		}
		if s := cmp.Or(p.Maintainer, p.Supplier); s != "" {
			c.Supplier = &cdx.OrganizationalEntity{Name: s}
		}
		if l := spdxLicense(p.License, licenses); l != noAssertion {
			c.Licenses = &cdx.Licenses{{Expression: l}}
		}
		var hashes []cdx.Hash
		for _, alg := range []string{"sha256", "sha512", "sha1", "md5"} {
			if v, ok := p.Checksums[alg]; ok {
				hashes = append(hashes, cdx.Hash{Algorithm: cdxHashes[alg], Value: v})
			}
		}
		if len(hashes) > 0 {
			c.Hashes = &hashes
		}
		components = append(components, c)
	}
	bom.Components = &components
	return bom, nil
}

// EncodeCycloneDX writes bom as compact CycloneDX 1.6 JSON with a final
// newline.
func EncodeCycloneDX(w io.Writer, bom *cdx.BOM) error {
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON).SetPretty(false).SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, cdxVersion); err != nil {
		return fmt.Errorf("sbom: encode cyclonedx: %w", err)
	}
	return nil
}
