package stubmodel

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/pkg/flagenv"
)

// Main runs the stubmodel command with args (without the program name) and
// returns the process exit code. `stubmodel healthcheck --addr A` probes a
// running stub's /healthz.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], stderr)
	}
	fs := flag.NewFlagSet("stubmodel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9460", "listen address")
	tokens := fs.Int("tokens", 16, "tokens per answer (a request's max_tokens caps it)")
	delay := fs.Duration("delay", 20*time.Millisecond, "pause before each token")
	first := fs.Duration("first-delay", 0, "extra pause before the first token")
	model := fs.String("model", "airlock-stub", "model id reported")
	keyFile := fs.String("api-key-file", "", "if set, require this API key as a Bearer token")
	if err := flagenv.Parse(fs, "AIRLOCK_STUB", args); err != nil {
		return 2
	}
	cfg := Config{Tokens: *tokens, Delay: *delay, FirstDelay: *first, Model: *model}
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "stubmodel: %v\n", err)
			return 1
		}
		cfg.APIKey = strings.TrimSpace(string(b))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stderr, `{"level":"info","service":"stubmodel","addr":%q,"tokens":%d,"delay":%q,"message":"stub model listening (test double, OpenAI-compatible)"}`+"\n", *addr, cfg.Tokens, cfg.Delay)
	if err := ListenAndServe(ctx, *addr, New(cfg)); err != nil {
		fmt.Fprintf(stderr, "stubmodel: %v\n", err)
		return 1
	}
	return 0
}

func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9460", "stub address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + *addr + "/healthz")
	if err != nil {
		fmt.Fprintf(stderr, "stubmodel healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "stubmodel healthcheck: %s\n", resp.Status)
		return 1
	}
	return 0
}
