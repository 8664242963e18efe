package sbom

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/package-url/packageurl-go"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// Document describes the SPDX document of an image.
type Document struct {
	// Name is the image's name; it names the document and its root package.
	Name string
	// Version is the root package's version, e.g. the image id (optional).
	Version string
	// Created is the document's creation time: the build's
	// SOURCE_DATE_EPOCH, so that a rebuild gives identical bytes.
	Created time.Time
	// Tool is the creating tool with its version, "imsbuild-1.2.0".
	Tool string
	// Namespace is the document's unique URI; empty derives one from the
	// name and the package list, which is unique per content and stable
	// across rebuilds.
	Namespace string
}

const noAssertion = "NOASSERTION"

// rootID is the SPDX identifier of the image itself.
const rootID = common.ElementID("Image")

// SPDX returns the SPDX 2.3 document of inv: one root package for the image
// that CONTAINS one package per installed package, each with its package
// URL. It has no random part: equal inventories and d give equal documents.
func (inv *Inventory) SPDX(d Document) (*spdx.Document, error) {
	if d.Name == "" {
		return nil, fmt.Errorf("sbom: document name is empty")
	}
	if d.Tool == "" {
		return nil, fmt.Errorf("sbom: tool is empty")
	}
	created := d.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      d.Name,
		DocumentNamespace: d.Namespace,
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: d.Tool}},
			Created:  created.UTC().Format(time.RFC3339),
		},
	}
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:               d.Name,
		PackageSPDXIdentifier:     rootID,
		PackageVersion:            d.Version,
		PackageDownloadLocation:   noAssertion,
		FilesAnalyzed:             false,
		IsFilesAnalyzedTagPresent: true,
		PackageLicenseConcluded:   noAssertion,
		PackageLicenseDeclared:    noAssertion,
		PackageCopyrightText:      noAssertion,
		PrimaryPackagePurpose:     "OPERATING-SYSTEM",
	})
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{
		RefA:         common.MakeDocElementID("", "DOCUMENT"),
		RefB:         common.MakeDocElementID("", string(rootID)),
		Relationship: common.TypeRelationshipDescribe,
	})
	seen := map[common.ElementID]bool{}
	refs := map[string]bool{}
	// Validating an expression is slow (the library compiles regexps per
	// call); spdxLicense caches it per term.
	licenses := map[string]bool{}
	h := sha256.New()
	for _, p := range inv.Packages {
		sp, err := inv.spdxPackage(p, licenses)
		if err != nil {
			return nil, err
		}
		for _, ref := range licenseRefRE.FindAllString(sp.PackageLicenseDeclared, -1) {
			refs[ref] = true
		}
		if seen[sp.PackageSPDXIdentifier] {
			continue // an identical entry twice (only a broken database has them)
		}
		seen[sp.PackageSPDXIdentifier] = true
		fmt.Fprintf(h, "%s\n", sp.PackageSPDXIdentifier)
		doc.Packages = append(doc.Packages, sp)
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA:         common.MakeDocElementID("", string(rootID)),
			RefB:         common.MakeDocElementID("", string(sp.PackageSPDXIdentifier)),
			Relationship: common.TypeRelationshipContains,
		})
	}
	// Every LicenseRef used must be declared with its text; the image holds
	// only the name, so the text says where the license is.
	for _, ref := range slices.Sorted(maps.Keys(refs)) {
		name, debian := strings.CutPrefix(ref, licenseRefPrefix)
		text := "A license named " + name + " in the copyright files (usr/share/doc/<package>/copyright) of the packages declaring it; it has no SPDX License List identifier."
		if !debian {
			name = strings.TrimPrefix(ref, "LicenseRef-")
			text = "A license named " + ref + " by the package metadata (the rpm License tag) of the packages declaring it; the image's package database does not hold its text."
		}
		doc.OtherLicenses = append(doc.OtherLicenses, &spdx.OtherLicense{
			LicenseIdentifier: ref, LicenseName: name, ExtractedText: text,
		})
	}
	if doc.DocumentNamespace == "" {
		// SPDX wants a URI unique to the document; .invalid (RFC 2606)
		// makes clear that nothing is served there.
		doc.DocumentNamespace = "https://imsbuild.invalid/spdx/" + url.PathEscape(d.Name) + "-" + hex.EncodeToString(h.Sum(nil))
	}
	return doc, nil
}

func (inv *Inventory) spdxPackage(p Package, licenses map[string]bool) (*spdx.Package, error) {
	declared := spdxLicense(p.License, licenses)
	sp := &spdx.Package{
		PackageName:               p.Name,
		PackageSPDXIdentifier:     packageID(p),
		PackageVersion:            p.FullVersion(),
		PackageDownloadLocation:   noAssertion,
		FilesAnalyzed:             false,
		IsFilesAnalyzedTagPresent: true,
		PackageLicenseConcluded:   noAssertion,
		PackageLicenseDeclared:    declared,
		PackageCopyrightText:      noAssertion,
	}
	if p.Source != "" {
		sp.PackageSourceInfo = "built package from: " + p.Source
	}
	switch {
	case p.Maintainer != "":
		sp.PackageSupplier = &common.Supplier{SupplierType: "Person", Supplier: p.Maintainer}
	case p.Supplier != "":
		sp.PackageSupplier = &common.Supplier{SupplierType: "Organization", Supplier: p.Supplier}
	}
	if u, err := url.Parse(p.Homepage); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		sp.PackageHomePage = p.Homepage
	}
	for _, alg := range []string{"sha256", "sha512", "sha1", "md5"} {
		v, ok := p.Checksums[alg]
		if !ok {
			continue
		}
		if _, err := hex.DecodeString(v); err != nil || v != strings.ToLower(v) {
			return nil, fmt.Errorf("sbom: package %s: %s checksum %.80q is not lowercase hex", p.Name, alg, v)
		}
		sp.PackageChecksums = append(sp.PackageChecksums, common.Checksum{
			Algorithm: common.ChecksumAlgorithm(strings.ToUpper(alg)), Value: v,
		})
	}
	if purl := inv.purl(p); purl != "" {
		sp.PackageExternalReferences = []*spdx.PackageExternalReference{{
			Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl,
		}}
	}
	return sp, nil
}

// packageID is a stable SPDX identifier ([A-Za-z0-9.-]) unique per type,
// name, version and arch: readable, plus a short hash for uniqueness, since
// the sanitized name alone can collide.
func packageID(p Package) common.ElementID {
	sum := sha256.Sum256([]byte(strings.Join([]string{p.Type, p.Name, p.Epoch, p.Version, p.Release, p.Arch}, "\x00")))
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, p.Name)
	if len(name) > 64 {
		name = name[:64]
	}
	return common.ElementID(fmt.Sprintf("Package-%s-%s-%s", p.Type, name, hex.EncodeToString(sum[:6])))
}

// purl is the package URL of p (purl-spec deb and rpm types), with the
// distribution as namespace and qualifier when os-release named one.
func (inv *Inventory) purl(p Package) string {
	var q []packageurl.Qualifier
	if p.Arch != "" {
		q = append(q, packageurl.Qualifier{Key: "arch", Value: p.Arch})
	}
	if inv.Distro.ID != "" {
		d := inv.Distro.ID
		if inv.Distro.VersionID != "" {
			d += "-" + inv.Distro.VersionID
		}
		q = append(q, packageurl.Qualifier{Key: "distro", Value: d})
	}
	version := p.Version
	if p.Type == TypeRPM {
		if p.Release != "" {
			version += "-" + p.Release
		}
		if p.Epoch != "" && p.Epoch != "0" {
			q = append(q, packageurl.Qualifier{Key: "epoch", Value: p.Epoch})
		}
	}
	// Qualifiers sort by key in the canonical form.
	slices.SortFunc(q, func(a, b packageurl.Qualifier) int { return strings.Compare(a.Key, b.Key) })
	ns := strings.ToLower(inv.Distro.ID)
	return packageurl.NewPackageURL(p.Type, ns, p.Name, version, q, "").ToString()
}

// licenseRefRE finds the LicenseRefs of an expression: Debian's made by
// licenseRef, or a package's own (Fedora's License tags name
// LicenseRef-Fedora-Public-Domain and the like).
var licenseRefRE = regexp.MustCompile(`LicenseRef-[A-Za-z0-9.-]+`)

// spdxLicense keeps a declared license only when it is a valid SPDX
// expression of listed licenses and LicenseRefs (each declared in the
// document's hasExtractedLicensingInfos); anything else (free text such as
// an older rpm's "GPLv2+", a DocumentRef) is NOASSERTION. An AND of valid
// expressions is valid, so each top-level AND term is validated on its own,
// with the results cached in valid: an image's packages share few terms.
func spdxLicense(s string, valid map[string]bool) string {
	if s == "" {
		return noAssertion
	}
	for _, term := range splitAND(s) {
		ok, seen := valid[term]
		if !seen {
			ok, _ = spdxexp.ValidateLicensesWithOptions([]string{term}, spdxexp.ValidateLicensesOptions{FailAllDocumentRefs: true})
			valid[term] = ok
		}
		if !ok {
			return noAssertion
		}
	}
	return s
}

// splitAND splits an expression at its AND operators outside parentheses.
// A malformed expression gives a malformed (so invalid) term.
func splitAND(s string) []string {
	var terms []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ' ':
			if depth == 0 && strings.HasPrefix(s[i:], " AND ") {
				terms = append(terms, s[start:i])
				start = i + len(" AND ")
				i += len(" AND ") - 1
			}
		}
	}
	return append(terms, s[start:])
}

// EncodeSPDX writes doc as compact SPDX 2.3 JSON with a final newline
// (indenting doubles the encoding time; jq reads it either way).
// encoding/json emits struct fields in declaration order and the document has
// no maps, so equal documents give equal bytes.
func EncodeSPDX(w io.Writer, doc *spdx.Document) error {
	enc := json.NewEncoder(w)
	// "<" stays "<": tools-golang's Supplier reader does not decode
	// \u003c, so HTML escaping would not survive its round trip (and the
	// document is not embedded in HTML).
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("sbom: encode spdx: %w", err)
	}
	return nil
}

// Generate scans root and writes its SPDX document to w: the one call an
// image step needs.
func Generate(ctx context.Context, root string, d Document, w io.Writer, opts ...ScanOption) error {
	inv, err := Scan(ctx, root, opts...)
	if err != nil {
		return err
	}
	doc, err := inv.SPDX(d)
	if err != nil {
		return err
	}
	return EncodeSPDX(w, doc)
}
