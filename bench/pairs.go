package main

import (
	"fmt"
	"slices"
	"syscall"
	"time"
)

// pairRuns is how many A/B pairs every comparison runs (-pairs). On a
// shared machine one run swings by a third; the spread of the pairs says
// how far a figure can be trusted.
var pairRuns = 3

// comparison holds the wall times of imsbuild and of the raw tool, run
// alternately: pair i is ours[i] next to raw[i]; and their CPU times
// (user+system of this process and of its finished children), which say
// more than the wall times on a machine that others load.
type comparison struct {
	ours, raw       []time.Duration
	oursCPU, rawCPU []time.Duration
}

// pairs runs ours and raw alternately, n pairs, swapping which goes first
// in every pair (A B, B A, A B, …) so that neither side always runs on a
// page cache or a load the other left behind.
func pairs(n int, ours, raw func()) comparison { return pairsAfter(n, func() {}, ours, raw) }

// pairsAfter is pairs with setup run, untimed, before every run of ours.
func pairsAfter(n int, setup, ours, raw func()) comparison {
	var c comparison
	runOurs := func() {
		wall, cpu := measured(ours)
		c.ours, c.oursCPU = append(c.ours, wall), append(c.oursCPU, cpu)
	}
	runRaw := func() {
		wall, cpu := measured(raw)
		c.raw, c.rawCPU = append(c.raw, wall), append(c.rawCPU, cpu)
	}
	for i := range n {
		if i%2 == 0 {
			setup()
			runOurs()
			runRaw()
		} else {
			runRaw()
			setup()
			runOurs()
		}
	}
	return c
}

// measured runs f and returns its wall time and the CPU time it took in
// this process and in the children it waited for (a child's own include
// its waited-for children: mksquashfs under imsbuild).
func measured(f func()) (wall, cpu time.Duration) {
	cpu0, start := processCPU(), time.Now()
	f()
	return time.Since(start), processCPU() - cpu0
}

// processCPU is the user+system time of this process and its finished
// children.
func processCPU() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// cpu says how the CPU times compare: "CPU imsbuild X, by hand Y, ratio R
// (min–max)", medians and the median of the pairs' ratios.
func (c comparison) cpu() string {
	rs := make([]float64, len(c.oursCPU))
	for i := range rs {
		rs[i] = float64(c.oursCPU[i]) / float64(c.rawCPU[i])
	}
	return fmt.Sprintf("CPU imsbuild %v, by hand %v, ratio %.2f (%.2f–%.2f)",
		medianDuration(c.oursCPU).Round(time.Millisecond), medianDuration(c.rawCPU).Round(time.Millisecond),
		medianFloat(rs), slices.Min(rs), slices.Max(rs))
}

// fromSamples makes a comparison of interleaved samples.
func fromSamples(ours, raw samples) comparison {
	var c comparison
	for i := range min(len(ours), len(raw)) {
		c.ours, c.oursCPU = append(c.ours, ours[i].wall), append(c.oursCPU, ours[i].cpu)
		c.raw, c.rawCPU = append(c.raw, raw[i].wall), append(c.rawCPU, raw[i].cpu)
	}
	return c
}

// ratio is the median of the pairs' ratios ours/raw (time: lower is better
// for imsbuild).
func (c comparison) ratio() float64 { return medianFloat(c.ratios(false)) }

// speedup is the median of raw/ours (throughput: higher is better).
func (c comparison) speedup() float64 { return medianFloat(c.ratios(true)) }

func (c comparison) ratios(inverse bool) []float64 {
	rs := make([]float64, len(c.ours))
	for i := range c.ours {
		if inverse {
			rs[i] = float64(c.raw[i]) / float64(c.ours[i])
		} else {
			rs[i] = float64(c.ours[i]) / float64(c.raw[i])
		}
	}
	return rs
}

// spread says how stable a ratio is: "min–max over N pairs, load L".
func (c comparison) spread(inverse bool) string {
	rs := c.ratios(inverse)
	return fmt.Sprintf("%.2f–%.2f over %d pairs, load %s", slices.Min(rs), slices.Max(rs), len(rs), loadAvg())
}

func (c comparison) oursMedian() time.Duration { return medianDuration(c.ours).Round(time.Millisecond) }
func (c comparison) rawMedian() time.Duration  { return medianDuration(c.raw).Round(time.Millisecond) }

func medianFloat(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
