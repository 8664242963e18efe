package sbom

import (
	"io"
	"os"
	"syscall"
	"testing"
	"time"
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
			cpu := cpuTime(b)
			for b.Loop() {
				if _, err := Scan(b.Context(), "/", bc.opts...); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
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
	cpu := cpuTime(b)
	for b.Loop() {
		doc, err := inv.SPDX(Document{Name: "host", Tool: "imsbuild-bench"})
		if err != nil {
			b.Fatal(err)
		}
		if err := EncodeSPDX(io.Discard, doc); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// cpuTime is the process's user plus system CPU time. Benchmarks report it
// per operation beside the wall time: on a loaded shared machine the wall
// time mostly measures the other processes.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N)/1e6, "cpu-ms/op")
}
