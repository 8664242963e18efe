package sbom

import (
	"io"
	"os"
	"testing"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// BenchmarkScanHost measures Scan of the host's dpkg database, with and
// without reading the copyright files.
func BenchmarkScanHost(b *testing.B) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		b.Skip("no dpkg database")
	}
	for _, bc := range []struct {
		name string
		opts []ScanOption
	}{{"licenses", nil}, {"status-only", []ScanOption{WithoutLicenses()}}} {
		b.Run(bc.name, func(b *testing.B) {
			cpu := testutil.CPUTime(b)
			for b.Loop() {
				if _, err := Scan(b.Context(), "/", bc.opts...); err != nil {
					b.Fatal(err)
				}
			}
			testutil.ReportCPU(b, cpu)
		})
	}
}

// BenchmarkSPDXHost measures making and encoding the document of the
// host's packages (after the scan).
func BenchmarkSPDXHost(b *testing.B) {
	inv, err := Scan(b.Context(), "/")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(inv.Packages)), "packages")
	cpu := testutil.CPUTime(b)
	for b.Loop() {
		doc, err := inv.SPDX(Document{Name: "host", Tool: "imsbuild-bench"})
		if err != nil {
			b.Fatal(err)
		}
		if err := EncodeSPDX(io.Discard, doc); err != nil {
			b.Fatal(err)
		}
	}
	testutil.ReportCPU(b, cpu)
}
