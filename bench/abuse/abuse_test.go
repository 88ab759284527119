package abuse

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// TestAbuse runs the abuse script against freshly built binaries when
// AIRLOCK_ABUSE is set (it takes about 30 s of two cores), prints the cost
// table, and checks the bounds the service promises: every abuse leaves a
// bounded log (no line over 4 KiB, under 256 KiB per run) and the
// legitimate user is never refused.
// AIRLOCK_ABUSE_ONLY (comma-separated names) narrows the run.
func TestAbuse(t *testing.T) {
	if os.Getenv("AIRLOCK_ABUSE") == "" {
		t.Skip("set AIRLOCK_ABUSE=1 to run the abuse script against the real binaries")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := t.TempDir()
	if err := buildBinaries(ctx, bin); err != nil {
		t.Fatal(err)
	}
	cfg := Config{BinDir: bin, WorkDir: t.TempDir(), Duration: 3 * time.Second}
	if d, err := time.ParseDuration(os.Getenv("AIRLOCK_ABUSE_DURATION")); err == nil {
		cfg.Duration = d
	}
	if only := os.Getenv("AIRLOCK_ABUSE_ONLY"); only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	rs, err := Run(ctx, cfg)
	t.Logf("\n%s", Markdown(rs))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.LegitErrors > 0 {
			t.Errorf("%s: the legitimate user was refused %d times", r.Name, r.LegitErrors)
		}
		if r.LongestLogLine > 4<<10 {
			t.Errorf("%s: a log line of %d bytes", r.Name, r.LongestLogLine)
		}
		if r.GatewayLogBytes+r.IssuerLogBytes > 256<<10 {
			t.Errorf("%s: logs grew %d bytes", r.Name, r.GatewayLogBytes+r.IssuerLogBytes)
		}
	}
}

func buildBinaries(ctx context.Context, dir string) error {
	return cluster.Build(ctx, dir)
}
