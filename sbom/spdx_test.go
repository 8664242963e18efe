package sbom

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

var testInventory = &Inventory{
	Distro: Distro{ID: "debian", VersionID: "12"},
	Packages: []Package{
		{Type: TypeDeb, Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", Source: "glibc",
			Maintainer: "GNU Libc Maintainers <debian-glibc@lists.debian.org>", Homepage: "https://www.gnu.org/software/libc/",
			License:   "GPL-2.0-or-later AND LicenseRef-Debian-permissive",
			Checksums: map[string]string{"sha256": strings.Repeat("ab", 32)}},
		{Type: TypeDeb, Name: "libc6", Version: "2.36-9+deb12u4", Arch: "i386", Homepage: "javascript:alert(1)"},
		{Type: TypeDeb, Name: "perl", Version: "1:5.36.0-7", Arch: "amd64", License: "Artistic-1.0-Perl OR GPL-1.0-or-later"},
		{Type: TypeRPM, Name: "bash", Epoch: "1", Version: "5.2", Release: "2.fc40", Arch: "x86_64", Supplier: "Fedora Project", License: "GPLv3+"},
		{Type: TypeRPM, Name: "tzdata", Version: "2024a", Release: "5.fc40", Arch: "noarch", License: "LicenseRef-Fedora-Public-Domain AND BSD-3-Clause"},
	},
}

var spdxIDRE = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)

// TestSPDX checks the document with the library's own parser and validator,
// and that it carries what a scanner needs: versions, purls, licenses.
func TestSPDX(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := Document{Name: "compute", Version: "4b1c", Created: created, Tool: "imsbuild-1.0.0"}
	doc, err := testInventory.SPDX(d)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := EncodeSPDX(&buf, doc); err != nil {
		t.Fatal(err)
	}
	back, err := spdxjson.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("spdx json.Read() = %v\n%s", err, buf.String())
	}
	if err := spdxlib.ValidateDocument(back); err != nil {
		t.Errorf("spdxlib.ValidateDocument() = %v", err)
	}
	described, err := spdxlib.GetDescribedPackageIDs(back)
	if err != nil || len(described) != 1 || described[0] != rootID {
		t.Errorf("described packages = %v, %v; want [%s]", described, err, rootID)
	}
	if back.CreationInfo.Created != "2026-01-02T03:04:05Z" {
		t.Errorf("created = %q", back.CreationInfo.Created)
	}
	if len(back.Packages) != 6 || len(back.Relationships) != 6 {
		t.Fatalf("%d packages and %d relationships, want 6 and 6", len(back.Packages), len(back.Relationships))
	}
	type row struct{ Name, Version, License, PURL, Homepage, Checksum string }
	var got []row
	ids := map[string]bool{}
	for _, p := range back.Packages[1:] {
		id := "SPDXRef-" + string(p.PackageSPDXIdentifier)
		if !spdxIDRE.MatchString(id) || ids[id] {
			t.Errorf("SPDX id %q is invalid or not unique", id)
		}
		ids[id] = true
		r := row{Name: p.PackageName, Version: p.PackageVersion, License: p.PackageLicenseDeclared, Homepage: p.PackageHomePage}
		if len(p.PackageExternalReferences) == 1 {
			r.PURL = p.PackageExternalReferences[0].Locator
			if _, err := packageurl.FromString(r.PURL); err != nil {
				t.Errorf("purl %q: %v", r.PURL, err)
			}
		}
		for _, c := range p.PackageChecksums {
			r.Checksum = string(c.Algorithm) + ":" + c.Value
		}
		got = append(got, r)
	}
	want := []row{
		{"libc6", "2.36-9+deb12u4", "GPL-2.0-or-later AND LicenseRef-Debian-permissive", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12", "https://www.gnu.org/software/libc/", "SHA256:" + strings.Repeat("ab", 32)},
		{"libc6", "2.36-9+deb12u4", "NOASSERTION", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=i386&distro=debian-12", "", ""},
		{"perl", "1:5.36.0-7", "Artistic-1.0-Perl OR GPL-1.0-or-later", "pkg:deb/debian/perl@1:5.36.0-7?arch=amd64&distro=debian-12", "", ""},
		{"bash", "1:5.2-2.fc40", "NOASSERTION", "pkg:rpm/debian/bash@5.2-2.fc40?arch=x86_64&distro=debian-12&epoch=1", "", ""},
		{"tzdata", "2024a-5.fc40", "LicenseRef-Fedora-Public-Domain AND BSD-3-Clause", "pkg:rpm/debian/tzdata@2024a-5.fc40?arch=noarch&distro=debian-12", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
	var refs []string
	for _, l := range back.OtherLicenses {
		if l.ExtractedText == "" || l.LicenseName == "" {
			t.Errorf("%s has no text or name", l.LicenseIdentifier)
		}
		refs = append(refs, l.LicenseIdentifier)
	}
	if diff := cmp.Diff([]string{"LicenseRef-Debian-permissive", "LicenseRef-Fedora-Public-Domain"}, refs); diff != "" {
		t.Errorf("hasExtractedLicensingInfos: want the LicenseRefs used (-want +got):\n%s", diff)
	}

	// Re-encoding the parsed document gives the same bytes: nothing is lost
	// or reordered in the round trip.
	var again bytes.Buffer
	if err := EncodeSPDX(&again, back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(buf.String(), again.String()); diff != "" {
		t.Errorf("round trip changed the document (-first +second):\n%s", diff)
	}
}

// TestSPDXReproducible: two scans of the same root give identical bytes,
// and the namespace changes with the content.
func TestSPDXReproducible(t *testing.T) {
	encode := func(inv *Inventory) string {
		doc, err := inv.SPDX(Document{Name: "host", Created: time.Unix(1700000000, 0), Tool: "imsbuild-test"})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := EncodeSPDX(&b, doc); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	a, err := Scan(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	var generated bytes.Buffer
	if err := Generate(t.Context(), "/", Document{Name: "host", Created: time.Unix(1700000000, 0), Tool: "imsbuild-test"}, &generated); err != nil {
		t.Fatal(err)
	}
	b, err := Scan(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	first, second := encode(a), encode(b)
	if first != second || first != generated.String() {
		t.Fatal("two scans of / gave different SPDX documents")
	}
	back, err := spdxjson.Read(strings.NewReader(first))
	if err != nil {
		t.Fatalf("host SBOM does not parse: %v", err)
	}
	if err := spdxlib.ValidateDocument(back); err != nil {
		t.Errorf("host SBOM: %v", err)
	}
	if len(back.Packages) != len(a.Packages)+1 {
		t.Errorf("host SBOM has %d packages, want %d", len(back.Packages), len(a.Packages)+1)
	}
	if len(a.Packages) > 0 {
		b.Packages = b.Packages[1:]
		if encode(b) == first || strings.Contains(encode(b), back.DocumentNamespace) {
			t.Error("dropping a package changed neither the document nor its namespace")
		}
	}
}

func TestSPDXRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Document
		inv  *Inventory
		want string
	}{
		{"no name", Document{Tool: "t"}, &Inventory{}, "document name is empty"},
		{"no tool", Document{Name: "n"}, &Inventory{}, "tool is empty"},
		{"bad checksum", Document{Name: "n", Tool: "t"}, &Inventory{Packages: []Package{{Type: TypeDeb, Name: "aa", Checksums: map[string]string{"sha256": "XYZ"}}}}, "not lowercase hex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.inv.SPDX(tc.d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SPDX() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestParseCopyright(t *testing.T) {
	const head = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n"
	for _, tc := range []struct{ name, in, want string }{
		{"one", head + "Files: *\nCopyright: me\nLicense: GPL-2+\n", "GPL-2.0-or-later"},
		{"distinct sorted", head + "Files: *\nLicense: GPL-3+\n\nFiles: a\nLicense: Expat\n\nLicense: GPL-3+\n text\n", "GPL-3.0-or-later AND MIT"},
		{"or and", head + "Files: *\nLicense: GPL-1+ or Artistic\n\nFiles: b\nLicense: BSL-1.0 and Zlib\n", "(Artistic-1.0-Perl OR GPL-1.0-or-later) AND BSL-1.0 AND Zlib"},
		{"unknown", head + "Files: *\nLicense: GPL-3+ with Bison exception\n", "LicenseRef-Debian-gpl-3-plus-with-bison-exception"},
		{"not machine-readable", "This is the Debian prepackaged version of bash.\nLicense: GPL-2+\n", ""},
		{"no license", head + "Files: *\nCopyright: me\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseCopyright([]byte(tc.in), map[string]string{}); got != tc.want {
				t.Errorf("parseCopyright() = %q, want %q", got, tc.want)
			}
			if tc.want != "" && spdxLicense(tc.want, map[string]bool{}) != tc.want {
				t.Errorf("spdxLicense(%q) = %q: not a valid SPDX expression", tc.want, spdxLicense(tc.want, map[string]bool{}))
			}
		})
	}
}

// TestDebianSPDXValid: every mapped identifier is on the SPDX License List.
func TestDebianSPDXValid(t *testing.T) {
	for deb, id := range debianSPDX {
		if strings.HasPrefix(id, "LicenseRef-") || spdxLicense(id, map[string]bool{}) != id {
			t.Errorf("debianSPDX[%q] = %q is not an SPDX License List identifier", deb, id)
		}
	}
}

func TestSPDXLicense(t *testing.T) {
	valid := map[string]bool{}
	for _, tc := range []struct{ in, want string }{
		{"MIT", "MIT"},
		{"GPL-2.0-or-later AND (MIT OR Apache-2.0)", "GPL-2.0-or-later AND (MIT OR Apache-2.0)"},
		{"GPL-2.0-only WITH Classpath-exception-2.0 AND MIT", "GPL-2.0-only WITH Classpath-exception-2.0 AND MIT"},
		{"LicenseRef-Debian-permissive AND MIT", "LicenseRef-Debian-permissive AND MIT"},
		{"GPLv2+", "NOASSERTION"},
		{"MIT AND GPLv2+", "NOASSERTION"},
		{"MIT AND", "NOASSERTION"},
		{"(MIT AND BSD-3-Clause", "NOASSERTION"},
		{"MIT) AND (BSD-3-Clause", "NOASSERTION"},
		{"LicenseRef-Fedora-Public-Domain", "LicenseRef-Fedora-Public-Domain"},
		{"DocumentRef-x:LicenseRef-y", "NOASSERTION"},
		{"", "NOASSERTION"},
	} {
		if got := spdxLicense(tc.in, valid); got != tc.want {
			t.Errorf("spdxLicense(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseCopyright: whatever a copyright file holds, the license found is
// empty or a valid SPDX expression (never one the document has to drop).
func FuzzParseCopyright(f *testing.F) {
	const head = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
	f.Add(head + "License: GPL-2+ or Artistic\n\nLicense: BSL-1.0 and MIT\n")
	f.Add(head + "License: GPL-3+ with Bison exception\nLicense: (weird) ü\n")
	f.Add(head + "License: or and or\nLicense:   \n")
	f.Fuzz(func(t *testing.T, in string) {
		got := parseCopyright([]byte(in), map[string]string{})
		if got != "" && spdxLicense(got, map[string]bool{}) != got {
			t.Errorf("parseCopyright() = %q, not a valid SPDX expression", got)
		}
	})
}
