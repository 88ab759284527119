// Package follow is the loop every gateway watch of the issuer (key set,
// revocations, model configuration) runs: open the stream, apply what it
// delivers until it breaks, wait a jittered backoff, open it again, until
// the context ends. One loop means one backoff, one reset rule and one
// injected clock for all three.
//
// The reset rule: a stream that delivered at least one message proves the
// issuer was up and let us in, so its end starts a fresh backoff (the next
// attempt comes within MinBackoff); a stream that failed before delivering
// anything doubles the wait, up to MaxBackoff.
package follow

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/gateway/internal/backoff"
)

// Defaults of Config.
const (
	DefaultMinBackoff = 200 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Watch runs one stream until it ends. It reports whether it delivered at
// least one message, and why it ended. It returns when ctx is done.
type Watch func(ctx context.Context) (delivered bool, err error)

// Config configures Run. Zero values take the defaults.
type Config struct {
	// What names the stream in log lines ("key set watch").
	What string
	// MinBackoff and MaxBackoff bound the jittered wait between attempts
	// (defaults 200 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
	// Sleep waits d or until ctx is done and reports whether d elapsed
	// (default: real time). Tests inject a fake clock here.
	Sleep func(ctx context.Context, d time.Duration) bool
	// Logger receives one warning per ended stream.
	Logger zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.Sleep == nil {
		c.Sleep = backoff.Sleep
	}
	return c
}

// Run follows watch until ctx is done, then returns.
func Run(ctx context.Context, c Config, watch Watch) {
	c = c.withDefaults()
	b := backoff.Backoff{Min: c.MinBackoff, Max: c.MaxBackoff}
	for ctx.Err() == nil {
		delivered, err := watch(ctx)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			b.Reset()
		}
		wait := b.Next()
		c.Logger.Warn().Err(err).Dur("retry_in", wait).Msg(c.What + " ended; reconnecting")
		if !c.Sleep(ctx, wait) {
			return
		}
	}
}
