package sbom

import (
	"os"
	"testing"
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
			for b.Loop() {
				if _, err := Scan(b.Context(), "/", bc.opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
