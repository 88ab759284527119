package stats

import (
	"math"
	"testing"
	"time"
)

func TestPercentileUsesNearestRank(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		name string
		p    float64
		want time.Duration
	}{
		{"p50 is the 5th of 10", 50, 5},
		{"p99 is the largest of 10", 99, 10},
		{"p0 is the smallest", 0, 1},
		{"p100 is the largest", 100, 10},
		{"out of range clamps", 150, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(ds, tt.p); got != tt.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
	if ds[0] != 5 {
		t.Fatal("Percentile sorted its input in place")
	}
	if Percentile(nil, 50) != 0 {
		t.Fatal("Percentile of no samples is not 0")
	}
}

func TestSpreadTakesMedianAndRangeIgnoringNaN(t *testing.T) {
	tests := []struct {
		name          string
		xs            []float64
		med, min, max float64
		n             int
	}{
		{"odd count", []float64{3, 1, 2}, 2, 1, 3, 3},
		{"even count averages the middle", []float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{"NaN ignored", []float64{math.NaN(), 7}, 7, 7, 7, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Of(tt.xs)
			if s.Median != tt.med || s.Min != tt.min || s.Max != tt.max || s.N != tt.n {
				t.Fatalf("Of(%v) = %+v", tt.xs, s)
			}
		})
	}
	if s := Of(nil); s.N != 0 || s.Format("%.1f") != "n/a" {
		t.Fatalf("Of(nil) = %+v, formatted %q", s, s.Format("%.1f"))
	}
	if got := Of([]float64{1, 2, 3}).Format("%.1f"); got != "2.0 (1.0 … 3.0, n=3)" {
		t.Fatalf("Format = %q", got)
	}
}
