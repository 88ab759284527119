package gobench

import (
	"math"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/airlock-dev/airlock/gateway/auth
cpu: AMD EPYC
BenchmarkVerify/cache_hit-2         	 1000000	      1102 ns/op	       0 B/op	       0 allocs/op
BenchmarkVerify/miss_RS256-2        	   35000	     33512 ns/op	    6800 B/op	      80 allocs/op
some log line
PASS
ok  	github.com/airlock-dev/airlock/gateway/auth	4.1s
pkg: github.com/airlock-dev/airlock/bench/verify
BenchmarkAuthPath-2   	   30000	     34000.5 ns/op
`

func TestParseKeepsBenchmarkLinesWithTheirPackage(t *testing.T) {
	rs, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(rs), rs)
	}
	hit := rs[0]
	if hit.Name != "Verify/cache_hit" || hit.Pkg != "github.com/airlock-dev/airlock/gateway/auth" ||
		hit.Iterations != 1000000 || hit.NsPerOp != 1102 || hit.BytesPerOp != 0 || hit.AllocsPerOp != 0 {
		t.Fatalf("cache hit = %+v", hit)
	}
	last := rs[2]
	if last.Pkg != "github.com/airlock-dev/airlock/bench/verify" || last.NsPerOp != 34000.5 || !math.IsNaN(last.AllocsPerOp) {
		t.Fatalf("last = %+v (allocs absent must be NaN)", last)
	}
	if got := Select(rs, "Verify/miss_RS256", func(r Result) float64 { return r.AllocsPerOp }); len(got) != 1 || got[0] != 80 {
		t.Fatalf("Select = %v", got)
	}
}

func TestParseLineRejects(t *testing.T) {
	tests := []struct{ name, line string }{
		{"not a benchmark", "ok  	pkg	1s"},
		{"bare prefix", "Benchmark 10 5 ns/op"},
		{"no iterations", "BenchmarkX-2 abc 5 ns/op"},
		{"zero iterations", "BenchmarkX-2 0 5 ns/op"},
		{"odd value/unit pairs", "BenchmarkX-2 10 5 ns/op 3"},
		{"negative value", "BenchmarkX-2 10 -5 ns/op"},
		{"no ns/op", "BenchmarkX-2 10 5 B/op"},
		{"infinite value", "BenchmarkX-2 10 +Inf ns/op"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, ok := ParseLine(tt.line); ok {
				t.Fatalf("ParseLine(%q) = %+v, want rejection", tt.line, r)
			}
		})
	}
}

func TestTrimProcsKeepsNamesWithoutSuffix(t *testing.T) {
	tests := map[string]string{"X-2": "X", "X/sub-case-16": "X/sub-case", "X/sub-case": "X/sub-case", "X": "X"}
	for in, want := range tests {
		if got := trimProcs(in); got != want {
			t.Errorf("trimProcs(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range strings.Split(sample, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := ParseLine(line)
		if !ok {
			return
		}
		if r.Iterations <= 0 || math.IsNaN(r.NsPerOp) || r.NsPerOp < 0 || strings.HasPrefix(r.Name, "Benchmark") && r.Name == "" {
			t.Fatalf("accepted %q as %+v", line, r)
		}
	})
}
