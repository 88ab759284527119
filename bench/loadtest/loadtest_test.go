package loadtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseRuntimeReadsEverySeriesOrFails(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_memstats_heap_inuse_bytes 1.2345e+06
grpc_server_handled_total{grpc_code="OK"} 7
`
	if _, err := parseRuntime([]byte(text)); err == nil || !strings.Contains(err.Error(), "process_resident_memory_bytes missing") {
		t.Fatalf("a missing series: %v, want it reported", err)
	}
	rt, err := parseRuntime([]byte(text + "process_resident_memory_bytes 2.5e+07\n"))
	if err != nil || rt != (GatewayRuntime{Goroutines: 42, HeapInuse: 1234500, ResidentSize: 25e6}) {
		t.Fatalf("parseRuntime = %+v, %v", rt, err)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(ds, 50), percentile(ds, 99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Fatalf("p50 %v p99 %v, want 50ms 99ms", p50, p99)
	}
	if percentile(nil, 50) != 0 {
		t.Fatal("percentile of nothing is not 0")
	}
}

func TestShortRunsStillRotate(t *testing.T) {
	tests := []struct {
		name           string
		duration, want time.Duration
	}{
		{"default run", 0, 10 * time.Second},
		{"long run", 5 * time.Minute, 10 * time.Second},
		{"LOADTEST_DURATION=5s", 5 * time.Second, 5 * time.Second / 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Config{Duration: tt.duration}).withDefaults().RotateEvery; got != tt.want {
				t.Fatalf("RotateEvery = %v, want %v", got, tt.want)
			}
		})
	}
	if got := (Config{Duration: 5 * time.Second, RotateEvery: time.Second}).withDefaults().RotateEvery; got != time.Second {
		t.Fatalf("an explicit period was replaced: %v", got)
	}
}

func TestReportFlagsEveryDefect(t *testing.T) {
	cfg := Config{}.withDefaults()
	r := &Report{Tallies: map[Kind]*Tally{}, Rotations: 0,
		Baseline: GatewayRuntime{Goroutines: 20, HeapInuse: 4 << 20},
		After:    GatewayRuntime{Goroutines: 200, HeapInuse: 64 << 20}}
	for _, k := range Kinds {
		r.Tallies[k] = &Tally{Requests: 10, OK: 10, Codes: map[string]int{"OK": 10}}
	}
	r.Tallies[Revoked].Failed, r.Tallies[Revoked].Unexpected = 1, []string{"revoked on duo_chat: OK"}
	r.check(cfg)
	want := []string{"revoked: 1 of 10", "no key rotation", "gateway goroutines 200", "gateway heap in use 64.0 MiB"}
	if len(r.Problems) != len(want) {
		t.Fatalf("problems = %q, want %d", r.Problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(r.Problems[i], w) {
			t.Errorf("problem %d = %q, want it to mention %q", i, r.Problems[i], w)
		}
	}
	if r.OK() || !strings.Contains(r.Markdown(), "Result: FAIL") {
		t.Fatal("a report with problems passes")
	}
}

// TestSmoke runs five seconds of the load against freshly built binaries.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := t.TempDir()
	if err := cluster.Build(context.Background(), bin); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	rep, err := Run(context.Background(), Config{BinDir: bin, Duration: 5 * time.Second, RotateEvery: 2 * time.Second,
		Workers: 4, Settle: 10 * time.Second, Log: &log})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", rep.Markdown())
	if !rep.OK() {
		t.Fatalf("load test failed: %q", rep.Problems)
	}
}
