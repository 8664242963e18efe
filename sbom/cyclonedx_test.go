package sbom

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func TestCycloneDX(t *testing.T) {
	d := Document{Name: "compute", Version: "4b1c", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Tool: "imsbuild-1.0.0"}
	encode := func(inv *Inventory) string {
		bom, err := inv.CycloneDX(d)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := EncodeCycloneDX(&b, bom); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	out := encode(testInventory)
	if again := encode(testInventory); again != out {
		t.Fatal("CycloneDX() is not deterministic")
	}
	validateCycloneDX(t, out)
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(out), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("decode: %v\n%s", err, out)
	}
	if bom.SpecVersion != cdx.SpecVersion1_6 || bom.BOMFormat != "CycloneDX" || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") {
		t.Errorf("header = %v %q %q", bom.SpecVersion, bom.BOMFormat, bom.SerialNumber)
	}
	if m := bom.Metadata; m.Timestamp != "2026-01-02T03:04:05Z" || m.Component.Name != "compute" || m.Component.Type != cdx.ComponentTypeOS {
		t.Errorf("metadata = %+v", m)
	}
	type row struct{ Name, Version, PURL, License string }
	var got []row
	for _, c := range *bom.Components {
		r := row{Name: c.Name, Version: c.Version, PURL: c.PackageURL}
		if c.Licenses != nil {
			r.License = (*c.Licenses)[0].Expression
		}
		got = append(got, r)
	}
	want := []row{
		{"libc6", "2.36-9+deb12u4", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12", "GPL-2.0-or-later AND LicenseRef-Debian-permissive"},
		{"libc6", "2.36-9+deb12u4", "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=i386&distro=debian-12", ""},
		{"perl", "1:5.36.0-7", "pkg:deb/debian/perl@1:5.36.0-7?arch=amd64&distro=debian-12", "Artistic-1.0-Perl OR GPL-1.0-or-later"},
		{"bash", "1:5.2-2.fc40", "pkg:rpm/debian/bash@5.2-2.fc40?arch=x86_64&distro=debian-12&epoch=1", ""},
		{"tzdata", "2024a-5.fc40", "pkg:rpm/debian/tzdata@2024a-5.fc40?arch=noarch&distro=debian-12", "LicenseRef-Fedora-Public-Domain AND BSD-3-Clause"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if c := (*bom.Components)[0]; c.Hashes == nil || (*c.Hashes)[0].Algorithm != cdx.HashAlgoSHA256 || c.Supplier == nil {
		t.Errorf("libc6 hashes %v supplier %v", c.Hashes, c.Supplier)
	}

	// The host's real packages (names, versions, licenses) validate too.
	host, err := Scan(t.Context(), "/")
	if err != nil {
		t.Fatal(err)
	}
	validateCycloneDX(t, encode(host))

	// Another package set, another serial number.
	other := &Inventory{Distro: testInventory.Distro, Packages: testInventory.Packages[1:]}
	var ob cdx.BOM
	if err := cdx.NewBOMDecoder(strings.NewReader(encode(other)), cdx.BOMFileFormatJSON).Decode(&ob); err != nil {
		t.Fatal(err)
	}
	if ob.SerialNumber == bom.SerialNumber {
		t.Error("different package sets have the same serial number")
	}
}

// validateCycloneDX validates a BOM against the official CycloneDX 1.6 JSON
// schema that cyclonedx-go ships (in the module cache with the module).
func validateCycloneDX(t *testing.T, bom string) {
	t.Helper()
	dir := strings.TrimSpace(run(t, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/CycloneDX/cyclonedx-go"))
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	// The schema refers to its companions by their ids; they are local.
	for url, file := range map[string]string{
		"http://cyclonedx.org/schema/jsf-0.82.schema.json": "jsf-0.82.schemax.json",
		"http://cyclonedx.org/schema/spdx.schema.json":     "spdx.schema.json",
	} {
		f, err := os.Open(filepath.Join(dir, "schema", file))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
	}
	sch, err := c.Compile(filepath.Join(dir, "schema/bom-1.6.schema.json"))
	if err != nil {
		t.Fatalf("compile the CycloneDX schema: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(bom))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("the BOM is not valid CycloneDX 1.6: %v", err)
	}
}
