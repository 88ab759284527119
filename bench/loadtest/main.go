package loadtest

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main runs `airlock-bench loadtest` with args (the flags after the
// subcommand) and returns the exit code: 0 when the run passed, 1 when it found a
// defect or could not run, 2 for bad flags. The duration defaults to
// $LOADTEST_DURATION, else 60 s.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock-bench loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	def := 60 * time.Second
	if v := os.Getenv("LOADTEST_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(stderr, "airlock-bench loadtest: LOADTEST_DURATION %q: want a positive duration such as 5s\n", v)
			return 2
		}
		def = d
	}
	fs.StringVar(&cfg.BinDir, "bin-dir", "bin", "directory holding the issuer, gateway and stubmodel binaries")
	fs.DurationVar(&cfg.Duration, "duration", def, "length of the load (env LOADTEST_DURATION)")
	fs.DurationVar(&cfg.RotateEvery, "rotate-every", 0, "key rotation period during the load (default 10s, or a third of a shorter duration)")
	fs.IntVar(&cfg.Workers, "workers", 8, "concurrent client loops")
	fs.DurationVar(&cfg.Settle, "settle", 20*time.Second, "time the gateway gets to return to its baseline after the load")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "airlock-bench loadtest: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg.Log = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "airlock-bench loadtest: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, rep.Markdown())
	if !rep.OK() {
		return 1
	}
	return 0
}
