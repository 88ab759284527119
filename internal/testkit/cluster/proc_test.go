package cluster

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestParseStatCPUSumsUserAndSystemTicks(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
		ok   bool
	}{
		{"plain name", "42 (gateway) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 9 0 100 1000 200", 2 * time.Second, true},
		{"name with spaces and parens", "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0", 100 * time.Millisecond, true},
		{"no command field", "42 gateway S 1", 0, false},
		{"too few fields", "42 (g) S 1 2 3", 0, false},
		{"not a number", "42 (g) S 1 42 42 0 -1 4194560 100 0 0 0 x 3 0 0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatCPU([]byte(tt.stat))
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseStatCPU = %v, %v; want %v, ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestParseStatusRSSReadsKilobytes(t *testing.T) {
	tests := []struct {
		name   string
		status string
		want   int64
		ok     bool
	}{
		{"present", "Name:\tgateway\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\nThreads: 9\n", 2048 << 10, true},
		{"absent (zombie)", "Name:\tgateway\nState:\tZ\n", 0, false},
		{"odd unit", "VmRSS:\t 2 MB\n", 0, false},
		{"negative", "VmRSS:\t -2 kB\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatusRSS([]byte(tt.status))
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("ParseStatusRSS = %v, %v; want %v, ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestReadUsageOfThisProcess(t *testing.T) {
	u, err := ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 {
		t.Fatalf("RSS = %d, want positive", u.RSS)
	}
}

const page = `# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 42
go_goroutines_extra 7
go_memstats_heap_inuse_bytes 1.5e+06
grpc_server_handled_total{grpc_code="OK",grpc_method="WatchKeys",grpc_service="airlock.issuer.v1.KeyService"} 3
grpc_server_handled_total{grpc_code="OK",grpc_method="MintToken",grpc_service="airlock.issuer.v1.TokenService"} 10
grpc_server_handled_total{grpc_code="Unavailable",grpc_method="MintToken",grpc_service="airlock.issuer.v1.TokenService"} 2
broken_metric{a="b" 5
`

func TestSampleSumsMatchingSeries(t *testing.T) {
	tests := []struct {
		name   string
		metric string
		match  []string
		want   float64
		found  bool
	}{
		{"unlabelled gauge, not its longer-named sibling", "go_goroutines", nil, 42, true},
		{"float notation", "go_memstats_heap_inuse_bytes", nil, 1.5e6, true},
		{"sum over labels", "grpc_server_handled_total", nil, 15, true},
		{"filtered by label", "grpc_server_handled_total", []string{`grpc_method="MintToken"`}, 12, true},
		{"filtered by two labels", "grpc_server_handled_total", []string{`grpc_method="MintToken"`, `grpc_code="OK"`}, 10, true},
		{"absent differs from zero", "process_cpu_seconds_total", nil, 0, false},
		{"malformed labels skipped", "broken_metric", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := Sample([]byte(page), tt.metric, tt.match...)
			if got != tt.want || found != tt.found {
				t.Fatalf("Sample = %v, %v; want %v, %v", got, found, tt.want, tt.found)
			}
		})
	}
}

func FuzzSample(f *testing.F) {
	f.Add(page, "grpc_server_handled_total", `grpc_code="OK"`)
	f.Add("m{a=\"}\"} 1\n", "m", "")
	f.Fuzz(func(t *testing.T, p, name, match string) {
		if name == "" {
			return
		}
		v, found := Sample([]byte(p), name, match)
		if !found && v != 0 {
			t.Fatalf("Sample reported %v for an absent metric", v)
		}
	})
}

func FuzzParseStatCPU(f *testing.F) {
	f.Add("42 (gateway) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 9 0 100 1000 200")
	f.Add("1 ()) S 0 0 0 0 0 0 0 0 0 0 18446744073709551615 1 0")
	f.Fuzz(func(t *testing.T, stat string) {
		d, err := ParseStatCPU([]byte(stat))
		if err == nil && d < 0 {
			t.Fatalf("negative CPU time %v from %q", d, stat)
		}
	})
}

func TestParseIOSyscalls(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 0\n", 7, true},
		{"syscr: 3\n", 0, false},
		{"syscr: x\nsyscw: 4\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseIOSyscalls([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseIOSyscalls(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFreeAddrIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	for range 20 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(addr)
		p, err := strconv.Atoi(port)
		if err != nil || p < 1024 || p >= low {
			t.Fatalf("FreeAddr = %s, want a port in [1024, %d)", addr, low)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("the address is not free: %v", err)
		}
		l.Close()
	}
}
