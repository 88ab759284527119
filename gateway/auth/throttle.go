package auth

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxClients bounds how many client addresses a FailureLimiter
// remembers.
const DefaultMaxClients = 10000

// FailureLimiter bounds the failed authentications one client address may
// cause. Each refusal the caller is to blame for takes a token from the
// address's bucket; an address whose bucket is empty is refused before any
// verification (ResourceExhausted) until the bucket refills, so a client
// spraying bad tokens costs a map lookup per call instead of a parse and a
// signature check. Callers that authenticate never spend tokens.
//
// Memory is bounded: at most maxClients buckets. When full, buckets that
// have refilled are forgotten first (they hold no state worth keeping),
// then arbitrary ones, down to three quarters, so the work is amortised
// O(1) per new address. Safe for concurrent use.
type FailureLimiter struct {
	limit      rate.Limit
	burst      int
	maxClients int
	now        func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// NewFailureLimiter allows perMinute failures per client address, with a
// burst of as many, remembering at most maxClients addresses (default
// DefaultMaxClients). now nil means time.Now. It returns nil (no limit)
// when perMinute <= 0; a nil *FailureLimiter is valid and limits nothing.
func NewFailureLimiter(perMinute, maxClients int, now func() time.Time) *FailureLimiter {
	if perMinute <= 0 {
		return nil
	}
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{limit: rate.Limit(float64(perMinute) / 60), burst: perMinute, maxClients: maxClients,
		now: now, buckets: make(map[string]*rate.Limiter)}
}

// Blocked reports whether client has no failures left.
func (l *FailureLimiter) Blocked(client string) bool {
	if l == nil || client == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[client]
	return b != nil && b.TokensAt(l.now()) < 1
}

// Failed records one failure of client.
func (l *FailureLimiter) Failed(client string) {
	if l == nil || client == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= l.maxClients {
			l.shrinkLocked(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[client] = b
	}
	b.AllowN(now, 1)
}

func (l *FailureLimiter) shrinkLocked(now time.Time) {
	target := l.maxClients * 3 / 4
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) <= target {
			break
		}
		delete(l.buckets, k)
	}
}

// size is the number of remembered clients (tests).
func (l *FailureLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
