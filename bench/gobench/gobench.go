// Package gobench reads the text output of `go test -bench` (the format
// benchstat reads too) so the suite can turn benchmark runs into ratios next
// to their targets. Only the standard units are kept: ns/op, B/op and
// allocs/op.
package gobench

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// Result is one benchmark line.
type Result struct {
	Pkg         string  // from the preceding "pkg:" line
	Name        string  // without the "Benchmark" prefix and the -GOMAXPROCS suffix
	Iterations  int64   // b.N
	NsPerOp     float64 // NaN when absent
	BytesPerOp  float64 // NaN when absent
	AllocsPerOp float64 // NaN when absent
}

// Parse reads every benchmark line of r. Lines it does not understand are
// skipped: the output interleaves logs, PASS/ok lines and configuration.
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if res, ok := ParseLine(line); ok {
			res.Pkg = pkg
			out = append(out, res)
		}
	}
	return out, sc.Err()
}

// ParseLine parses one "BenchmarkName-N  iters  v unit  v unit ..." line.
func ParseLine(line string) (Result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f[0]) == len("Benchmark") {
		return Result{}, false
	}
	iters, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || iters <= 0 {
		return Result{}, false
	}
	res := Result{Name: trimProcs(f[0][len("Benchmark"):]), Iterations: iters,
		NsPerOp: math.NaN(), BytesPerOp: math.NaN(), AllocsPerOp: math.NaN()}
	if (len(f)-2)%2 != 0 {
		return Result{}, false
	}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return Result{}, false
		}
		switch f[i+1] {
		case "ns/op":
			res.NsPerOp = v
		case "B/op":
			res.BytesPerOp = v
		case "allocs/op":
			res.AllocsPerOp = v
		}
	}
	if math.IsNaN(res.NsPerOp) {
		return Result{}, false
	}
	return res, true
}

// trimProcs removes the "-N" GOMAXPROCS suffix the testing package adds.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// Select returns the values of one benchmark (by name, any package) picked
// by f, in the order they appear: one per -count run.
func Select(rs []Result, name string, f func(Result) float64) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Name == name {
			out = append(out, f(r))
		}
	}
	return out
}
