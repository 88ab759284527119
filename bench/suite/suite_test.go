package suite

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunVerifyPairsRunsIntoRatiosAndVerdicts(t *testing.T) {
	r := &Report{}
	if err := runVerify(Options{VerifyRaw: "testdata/verify.txt"}, r); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		value   string
		verdict Verdict
	}{
		// Runs pair up: 36000/30000 and 33000/30000.
		"auth path / bare jws.Verify, distinct RS256 tokens (bench/verify)": {"1.150 (1.100 … 1.200, n=2)×", Pass},
		// Median of 1040 and 2500 ns.
		"cache hit time (bench/verify)": {"1770 (1040 … 2500, n=2) ns", Pass},
		// One run allocated 6: the target is on every run.
		"cache hit allocations (bench/verify)": {"3 (0 … 6, n=2)", Miss},
	}
	if len(r.Figures) != len(want) {
		t.Fatalf("got %d figures, want %d: %+v", len(r.Figures), len(want), r.Figures)
	}
	for _, f := range r.Figures {
		w, ok := want[f.Name]
		if !ok {
			t.Fatalf("unexpected figure %q", f.Name)
		}
		if f.Value != w.value || f.Verdict != w.verdict {
			t.Errorf("%s = %q %s, want %q %s", f.Name, f.Value, f.Verdict, w.value, w.verdict)
		}
	}
}

func TestRunVerifyRefusesMissingInput(t *testing.T) {
	if err := runVerify(Options{}, &Report{}); err == nil {
		t.Fatal("no --verify-raw accepted")
	}
	if err := runVerify(Options{VerifyRaw: "testdata/does-not-exist"}, &Report{}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestReportPrintsEveryFigureAndFailure(t *testing.T) {
	r := &Report{}
	r.add(Figure{"2 wire", "32 streams: added TTFT p50", "0.4 ms", "≤ 0.5 ms", Pass})
	r.add(Figure{"3 scale", "errors", "2", "0", Miss})
	r.Failures = append(r.Failures, "mint: issuer did not start")
	var b bytes.Buffer
	r.PrintTable(&b)
	out := b.String()
	for _, s := range []string{"2 wire: 32 streams: added TTFT p50", "0.4 ms", "≤ 0.5 ms", "PASS", "3 scale: errors", "MISS", "NOT RUN: mint: issuer did not start"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	md := r.MarkdownTable()
	if !strings.Contains(md, "| 3 scale | errors | 2 | 0 | MISS |") || !strings.Contains(md, "**Not run:** mint") {
		t.Errorf("markdown table:\n%s", md)
	}
}

func TestMainRejectsBadUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"--nope"}},
		{"zero runs", []string{"--runs", "0"}},
		{"pprof wrapper without address", []string{"gateway-pprof"}},
		{"pprof on a public address", []string{"gateway-pprof", "--pprof-addr", "0.0.0.0:1", "--"}},
		{"Go proxy without upstream", []string{"go-proxy", "--listen", "127.0.0.1:0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := Main(tt.args); code != 2 {
				t.Fatalf("Main(%v) = %d, want 2", tt.args, code)
			}
		})
	}
}
