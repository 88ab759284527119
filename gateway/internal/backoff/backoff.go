// Package backoff is the jittered exponential backoff the gateway's watch
// loops (keys, revocations, model configuration) reconnect with, so a fleet
// of gateways that lost the issuer at the same moment does not reconnect in
// lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields waits uniform in [Min/2, min(Max, Min·2^n)] ("full jitter"
// with a floor, so a tight failure loop still yields the CPU). The zero
// value is not usable: set Min and Max.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns the next wait and doubles the ceiling (up to Max).
func (b *Backoff) Next() time.Duration {
	ceil := b.Min << min(b.n, 30)
	if ceil <= 0 || ceil > b.Max {
		ceil = b.Max
	} else {
		b.n++
	}
	return b.Min/2 + rand.N(ceil-b.Min/2+1) //nolint:gosec // G404: jitter, not a secret
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx is done; it reports whether d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
