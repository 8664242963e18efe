package testutil

import (
	"syscall"
	"testing"
	"time"
)

// CPUTime is the process's user plus system CPU time (all threads, GC
// included). Benchmarks report it per operation beside the wall time: on a
// loaded shared machine the wall time mostly measures the other processes.
func CPUTime(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportCPU reports the CPU time per operation since start (a CPUTime) as
// the metric cpu-ms/op.
func ReportCPU(b *testing.B, start time.Duration) {
	b.Helper()
	b.ReportMetric(float64(CPUTime(b)-start)/float64(b.N)/1e6, "cpu-ms/op")
}
