// Package stats summarises benchmark samples: percentiles of latencies and
// the median and spread of a figure measured over several runs.
package stats

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of ds by the
// nearest-rank method, or 0 for no samples. ds is not modified.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[rank(len(s), p)]
}

// rank is the nearest-rank index of the p-th percentile among n samples.
func rank(n int, p float64) int {
	p = math.Max(0, math.Min(100, p))
	r := int(math.Ceil(p/100*float64(n))) - 1
	return max(0, min(n-1, r))
}

// Spread is the median, minimum and maximum of one figure over several runs.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// Of summarises xs; NaN values are ignored.
func Of(xs []float64) Spread {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// Format renders the spread as "median (min … max, n=N)" with format f for
// each number.
func (s Spread) Format(f string) string {
	if s.N == 0 {
		return "n/a"
	}
	if s.N == 1 {
		return fmt.Sprintf(f, s.Median)
	}
	return fmt.Sprintf(f+" ("+f+" … "+f+", n=%d)", s.Median, s.Min, s.Max, s.N)
}

// Ms converts a duration to float milliseconds.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
