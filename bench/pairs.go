package main

import (
	"fmt"
	"slices"
	"time"
)

// pairRuns is how many A/B pairs every comparison runs (-pairs). On a
// shared machine one run swings by a third; the spread of the pairs says
// how far a figure can be trusted.
var pairRuns = 3

// comparison holds the wall times of imsbuild and of the raw tool, run
// alternately: pair i is ours[i] next to raw[i].
type comparison struct {
	ours, raw []time.Duration
}

// pairs runs ours and raw alternately, n pairs, swapping which goes first
// in every pair (A B, B A, A B, …) so that neither side always runs on a
// page cache or a load the other left behind.
func pairs(n int, ours, raw func()) comparison { return pairsAfter(n, func() {}, ours, raw) }

// pairsAfter is pairs with setup run, untimed, before every run of ours.
func pairsAfter(n int, setup, ours, raw func()) comparison {
	var c comparison
	for i := range n {
		if i%2 == 0 {
			setup()
			c.ours = append(c.ours, timed(ours))
			c.raw = append(c.raw, timed(raw))
		} else {
			c.raw = append(c.raw, timed(raw))
			setup()
			c.ours = append(c.ours, timed(ours))
		}
	}
	return c
}

// fromSamples makes a comparison of interleaved samples.
func fromSamples(ours, raw samples) comparison {
	var c comparison
	for i := range min(len(ours), len(raw)) {
		c.ours = append(c.ours, ours[i].wall)
		c.raw = append(c.raw, raw[i].wall)
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
