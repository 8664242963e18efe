package engine

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// dpkgStatus is a small dpkg database: two installed packages and one
// removed (config-files), which is not installed and so not in the SBOM.
const dpkgStatus = `Package: base-files
Status: install ok installed
Priority: required
Essential: yes
Architecture: amd64
Version: 12.4+deb12u5
Maintainer: Santiago Vila <sanvila@debian.org>
Description: Debian base system miscellaneous files

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Description: GNU C Library: Shared libraries

Package: oldpkg
Status: deinstall ok config-files
Architecture: all
Version: 1.0-1
Description: removed, its configuration kept
`

// TestImageSBOM builds the busybox base (no package database) and a
// compute image whose customize script installs a dpkg status: each
// published image has a valid SPDX document beside it, dated
// SOURCE_DATE_EPOCH; the base's lists no packages, the compute one lists
// exactly what dpkg-query lists from that status (the scan runs after
// customize); no manifest lists the SBOM.
func TestImageSBOM(t *testing.T) {
	dpkgQuery := testutil.RequireTool(t, "dpkg-query")
	f := newFixture(t)
	f.cfg.Images["compute"].Customize[0].Inline = "mkdir -p /var/lib/dpkg\ncat > /var/lib/dpkg/status <<'EOF'\n" + dpkgStatus + "EOF\n"
	const epoch = 1700000000
	if _, err := f.build(t, t.Context(), Options{Environ: []string{"SOURCE_DATE_EPOCH=1700000000"}}); err != nil {
		t.Fatalf("Build() = %v", err)
	}

	admin := t.TempDir()
	if err := os.WriteFile(filepath.Join(admin, "status"), []byte(dpkgStatus), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(dpkgQuery, "--admindir="+admin, "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var wantDebs []string
	for l := range strings.Lines(string(out)) {
		if fs := strings.Fields(l); len(fs) == 3 && fs[0] == "ii" {
			wantDebs = append(wantDebs, fs[1]+" "+fs[2])
		}
	}
	if len(wantDebs) != 2 {
		t.Fatalf("dpkg-query listed %q, want the 2 installed packages", out)
	}

	docs, _ := filepath.Glob(filepath.Join(f.out, "boot-images", "*", ims.SBOMFile))
	if len(docs) != 2 {
		t.Fatalf("published SBOMs = %v, want one per image", docs)
	}
	got := map[string][]string{}
	for _, p := range docs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := spdxjson.Read(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := spdxlib.ValidateDocument(doc); err != nil {
			t.Errorf("%s: ValidateDocument() = %v", p, err)
		}
		if want := time.Unix(epoch, 0).UTC().Format(time.RFC3339); doc.CreationInfo.Created != want {
			t.Errorf("%s: created %q, want SOURCE_DATE_EPOCH %q", p, doc.CreationInfo.Created, want)
		}
		var debs []string
		for _, pkg := range doc.Packages {
			if pkg.PackageSPDXIdentifier != "Image" {
				debs = append(debs, pkg.PackageName+" "+pkg.PackageVersion)
			}
		}
		slices.Sort(debs)
		got[doc.DocumentName] = debs
		m, err := os.ReadFile(filepath.Join(filepath.Dir(p), ims.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(m, []byte("sbom")) || bytes.Contains(m, []byte("spdx")) {
			t.Errorf("%s lists the SBOM:\n%s", ims.ManifestFile, m)
		}
	}
	if debs, ok := got["base"]; !ok || len(debs) != 0 {
		t.Errorf("base SBOM packages = %q (present %v), want none (busybox has no package database)", debs, ok)
	}
	if debs := got["compute"]; !slices.Equal(debs, wantDebs) {
		t.Errorf("compute SBOM packages = %q, want dpkg-query's %q", debs, wantDebs)
	}

	// A cold rebuild (another cache, another root directory) gives the same
	// SBOM bytes: the document enters the cache like any output.
	f2 := newFixture(t)
	f2.cfg.Images["compute"].Customize[0].Inline = f.cfg.Images["compute"].Customize[0].Inline
	if _, err := f2.build(t, t.Context(), Options{Environ: []string{"SOURCE_DATE_EPOCH=1700000000"}}); err != nil {
		t.Fatalf("second Build() = %v", err)
	}
	for _, p := range docs {
		rel, _ := filepath.Rel(f.out, p)
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(f2.out, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("cold rebuild: %s differs (%v)", rel, err)
		}
	}
}
