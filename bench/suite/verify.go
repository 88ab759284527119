package suite

import (
	"errors"
	"fmt"
	"os"

	"github.com/airlock-dev/airlock/bench/gobench"
	"github.com/airlock-dev/airlock/bench/stats"
)

// Benchmark names (bench/verify and gateway/auth) the verification figures
// are computed from.
const (
	benchAuthMiss = "AuthPathDistinctRS256"
	benchBare     = "BareJWSVerifyRS256"
	benchHit      = "AuthPathCacheHit"
	authPkgMiss   = "Verify/miss_RS256"
	authPkgBare   = "Verify/bare_jws_verify_RS256"
	authPkgHit    = "Verify/cache_hit"
)

// runVerify turns the verification benchmarks' output (run by make bench
// with -count) into ratios, pairing the i-th run of each benchmark.
func runVerify(o Options, r *Report) error {
	const section = "1 verification"
	if o.VerifyRaw == "" {
		return errors.New("--verify-raw not given (make bench runs the benchmarks and passes it)")
	}
	f, err := os.Open(o.VerifyRaw)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only
	rs, err := gobench.Parse(f)
	if err != nil {
		return err
	}
	ns := func(x gobench.Result) float64 { return x.NsPerOp }
	allocs := func(x gobench.Result) float64 { return x.AllocsPerOp }
	ratio := func(miss, bare string) (stats.Spread, error) {
		a, b := gobench.Select(rs, miss, ns), gobench.Select(rs, bare, ns)
		if len(a) == 0 || len(a) != len(b) {
			return stats.Spread{}, fmt.Errorf("benchmarks %s and %s: %d and %d runs", miss, bare, len(a), len(b))
		}
		out := make([]float64, len(a))
		for i := range a {
			out[i] = a[i] / b[i]
		}
		return stats.Of(out), nil
	}
	distinct, err := ratio(benchAuthMiss, benchBare)
	if err != nil {
		return err
	}
	r.add(Figure{section, "auth path / bare jws.Verify, distinct RS256 tokens (bench/verify)", distinct.Format("%.3f") + "×", "≤ 1.3×", verdict(distinct.Median <= 1.3)})
	if same, err := ratio(authPkgMiss, authPkgBare); err == nil {
		r.add(Figure{section, "auth miss / bare jws.Verify, cache off (gateway/auth)", same.Format("%.3f") + "×", "≤ 1.3×", verdict(same.Median <= 1.3)})
	}
	for _, hit := range []struct{ name, label string }{{benchHit, "bench/verify"}, {authPkgHit, "gateway/auth"}} {
		t, a := stats.Of(gobench.Select(rs, hit.name, ns)), stats.Of(gobench.Select(rs, hit.name, allocs))
		if t.N == 0 {
			continue
		}
		r.add(Figure{section, "cache hit time (" + hit.label + ")", t.Format("%.0f") + " ns", "≤ 2000 ns", verdict(t.Median <= 2000)})
		r.add(Figure{section, "cache hit allocations (" + hit.label + ")", a.Format("%.0f"), "≤ 5", verdict(a.Max <= 5)})
	}
	miss := stats.Of(gobench.Select(rs, benchAuthMiss, ns))
	bare := stats.Of(gobench.Select(rs, benchBare, ns))
	r.detail(section, "Auth path for a distinct token %.1f µs vs bare signature verification %.1f µs (medians of %d runs). The ratio pairs the i-th run of each benchmark.",
		miss.Median/1000, bare.Median/1000, miss.N)
	if o.VerifyStat != "" {
		if b, err := os.ReadFile(o.VerifyStat); err == nil {
			r.detail(section, "benchstat:\n\n```\n%s```", string(b))
		}
	}
	return nil
}
