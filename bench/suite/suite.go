// Package suite is the Airlock performance suite behind `make bench` and
// cmd/airlock-bench: it starts the real binaries on loopback (internal/testkit/cluster),
// drives them with the bounded load generator (bench/load), reads the
// in-process verification benchmarks (bench/verify, gateway/auth) and writes
// every figure next to its target, to stdout and to BENCHMARKS.md.
//
// Every figure is a ratio or a pair measured side by side in the same run,
// repeated for a spread, because the shared machine is noisy; nothing here
// asserts a wall-clock time.
package suite

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/bench/loadtest"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// Options select what a run measures and where its inputs and outputs are.
type Options struct {
	BinDir        string // issuer, gateway, stubmodel binaries
	WorkDir       string // data dirs, logs and profiles of this run
	Out           string // BENCHMARKS.md path; empty writes none
	VerifyRaw     string // `go test -bench` output of the verification benchmarks
	VerifyStat    string // benchstat's rendering of VerifyRaw
	Findings      string // hand-written profile findings to include
	Commands      string // the commands that produced the run, for the record
	Scenarios     []string
	Runs          int  // repetitions of every side-by-side measurement
	Quick         bool // small sizes, for a smoke run
	ScaleStreams  int
	ScaleDuration time.Duration
	Watchers      int
}

// Scenario names.
const (
	ScVerify  = "verify"
	ScWire    = "wire"
	ScScale   = "scale"
	ScMint    = "mint"
	ScIssuer  = "issuer"
	ScProfile = "profile"
	ScHA      = "ha"
)

// AllScenarios in the order they run.
var AllScenarios = []string{ScVerify, ScWire, ScIssuer, ScMint, ScHA, ScScale, ScProfile}

// Main runs the airlock-bench command with args (without the program name)
// and returns the exit code: 0 when every scenario ran (targets missed are
// reported, not failed: they are findings), 1 when a scenario could not run,
// 2 for bad usage. `airlock-bench loadtest [flags]` runs the load test
// instead (bench/loadtest, `make loadtest`).
func Main(args []string) int {
	if len(args) > 0 && args[0] == "gateway-pprof" {
		return gatewayWithPprof(args[1:])
	}
	if len(args) > 0 && args[0] == "go-proxy" {
		return runGoProxy(args[1:])
	}
	if len(args) > 0 && args[0] == "loadtest" {
		return loadtest.Main(args[1:], os.Stdout, os.Stderr)
	}
	fs := flag.NewFlagSet("airlock-bench", flag.ContinueOnError)
	var o Options
	var scen string
	fs.StringVar(&o.BinDir, "bin-dir", "bin", "directory holding the issuer, gateway and stubmodel binaries")
	fs.StringVar(&o.WorkDir, "work-dir", "", "directory for data, logs and profiles (default: a new temporary directory)")
	fs.StringVar(&o.Out, "out", "BENCHMARKS.md", "write the report here (empty: stdout only)")
	fs.StringVar(&o.VerifyRaw, "verify-raw", "", "`go test -bench` output of the verification benchmarks")
	fs.StringVar(&o.VerifyStat, "verify-benchstat", "", "benchstat output for --verify-raw")
	fs.StringVar(&o.Findings, "findings", "bench/findings.md", "hand-written profile findings included in the report")
	fs.StringVar(&o.Commands, "commands", "", "file listing the commands of this run, for the report")
	fs.StringVar(&scen, "scenarios", strings.Join(AllScenarios, ","), "comma-separated scenarios: "+strings.Join(AllScenarios, ","))
	fs.IntVar(&o.Runs, "runs", 3, "repetitions of every side-by-side measurement")
	fs.BoolVar(&o.Quick, "quick", false, "small sizes (smoke run; figures not comparable)")
	fs.IntVar(&o.ScaleStreams, "scale-streams", 5000, "concurrent streams held open by the scale scenario")
	fs.DurationVar(&o.ScaleDuration, "scale-duration", 20*time.Second, "how long each scale stream stays open (one chunk per second)")
	fs.IntVar(&o.Watchers, "watchers", 1000, "WatchKeys streams in the key-rotation measurement")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, s := range strings.Split(scen, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	if o.Runs < 1 {
		fmt.Fprintln(os.Stderr, "airlock-bench: --runs must be at least 1")
		return 2
	}
	if o.Quick {
		o.ScaleStreams, o.ScaleDuration, o.Watchers = min(o.ScaleStreams, 300), min(o.ScaleDuration, 5*time.Second), min(o.Watchers, 100)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, o, os.Stderr)
	if rep != nil {
		rep.PrintTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "airlock-bench:", err)
		return 1
	}
	if len(rep.Failures) > 0 {
		return 1
	}
	return 0
}

// Run runs the selected scenarios and writes the report to o.Out. Progress
// goes to logw. A scenario that cannot run is recorded in Failures and the
// others still run.
func Run(ctx context.Context, o Options, logw io.Writer) (*Report, error) {
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "airlock-bench-")
		if err != nil {
			return nil, err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		o.WorkDir = dir
	}
	abs, err := filepath.Abs(o.BinDir)
	if err != nil {
		return nil, err
	}
	o.BinDir = abs
	if err := cluster.CheckBinaries(o.BinDir); err != nil {
		return nil, err
	}
	r := &Report{}
	start := time.Now()
	for _, s := range o.Scenarios {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(logw, "== %s (%s elapsed)\n", s, time.Since(start).Round(time.Second))
		var err error
		dir := filepath.Join(o.WorkDir, s)
		switch s {
		case ScVerify:
			err = runVerify(o, r)
		case ScWire:
			err = runWire(ctx, o, dir, r, logw)
		case ScIssuer:
			err = runIssuer(ctx, o, dir, r, logw)
		case ScMint:
			err = runMint(ctx, o, dir, r, logw)
		case ScHA:
			err = runHA(ctx, o, dir, r, logw)
		case ScScale:
			err = runScale(ctx, o, dir, r, logw)
		case ScProfile:
			err = runProfile(ctx, o, dir, r, logw)
		default:
			err = fmt.Errorf("unknown scenario (want one of %s)", strings.Join(AllScenarios, ","))
		}
		if err != nil {
			r.Failures = append(r.Failures, s+": "+err.Error())
			fmt.Fprintf(logw, "   %s failed: %v\n", s, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return r, errors.New("interrupted")
	}
	if o.Out != "" {
		if err := writeMarkdown(o, r, time.Since(start)); err != nil {
			return r, err
		}
		fmt.Fprintf(logw, "report written to %s\n", o.Out)
	}
	return r, nil
}
