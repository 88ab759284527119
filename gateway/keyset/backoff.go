package keyset

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is a jittered exponential backoff ("full jitter"): each wait is
// uniform in [0, min(max, base·2^n)), so a fleet of gateways that lost the
// issuer at the same moment does not reconnect in lockstep.
type backoff struct {
	min, max time.Duration
	n        int
}

func (b *backoff) next() time.Duration {
	ceil := b.min << min(b.n, 30)
	if ceil <= 0 || ceil > b.max {
		ceil = b.max
	} else {
		b.n++
	}
	// Never below min/2, so a tight failure loop still yields the CPU.
	return b.min/2 + rand.N(ceil-b.min/2+1)
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
