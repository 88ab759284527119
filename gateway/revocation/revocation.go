// Package revocation keeps the set of revoked token ids (jti) that the
// issuer pushes to the gateway, so a revoked token is refused within a
// second of its revocation even though its signature is still valid.
//
// The list is append-only while an entry matters: a revocation is never
// undone, and each entry is dropped only after the token it names has
// expired (plus a grace that covers the verifier's clock leeway). After a
// reconnect the issuer's first message holds every current revocation; the
// list takes the union with what it already holds, which fails closed.
package revocation

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"

	"github.com/airlock-dev/airlock/gateway/internal/follow"
)

// Defaults for Options.
const (
	DefaultGrace      = 5 * time.Minute
	DefaultMinBackoff = follow.DefaultMinBackoff // the same for every watch of the issuer
	DefaultMaxBackoff = follow.DefaultMaxBackoff
	// DefaultPruneInterval is how often Run drops expired entries.
	DefaultPruneInterval = time.Minute
	// DefaultMaxTTL caps how long an entry is kept when the issuer sends no
	// or an absurd expiry: longer than any token may live.
	DefaultMaxTTL = 24 * time.Hour
)

// Options configure a List. Zero values take the defaults above.
type Options struct {
	// Grace keeps an entry this long after the token's expiry, so a token
	// accepted within the verifier's clock leeway is still refused.
	Grace time.Duration
	// MaxTTL bounds how long an entry without a usable expiry is kept.
	MaxTTL time.Duration
	// MinBackoff and MaxBackoff bound the jittered reconnect backoff.
	MinBackoff, MaxBackoff time.Duration
	// PruneInterval is how often Run drops expired entries.
	PruneInterval time.Duration
	// Logger receives stream failures (never tokens; jtis are not secret).
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep waits between reconnects (d or until ctx is done, reporting
	// whether d elapsed); nil means real time. Tests inject a fake clock.
	Sleep func(ctx context.Context, d time.Duration) bool
	// OnRevoke is called once for each newly revoked jti, after it is in the
	// list, so a cache of verified tokens can evict it.
	OnRevoke func(jti string)
}

func (o Options) withDefaults() Options {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// List is the set of revoked jtis, each with the time it may be forgotten.
// It is safe for concurrent use; Revoked takes only a read lock.
type List struct {
	opts   Options
	client issuerv1.TokenServiceClient

	mu      sync.RWMutex
	entries map[string]time.Time // jti → forget after
	synced  atomic.Bool
	// live is set while a watch stream has delivered its first message and
	// not ended; lastLive (unix nanoseconds) is when the view was last known
	// current: the start, or when the last live stream ended.
	live     atomic.Bool
	lastLive atomic.Int64
}

// New returns an empty list with no source; Add fills it.
func New(opts Options) *List {
	l := &List{opts: opts.withDefaults(), entries: make(map[string]time.Time)}
	l.lastLive.Store(l.opts.Now().UnixNano())
	return l
}

// Age is how stale the view may be: zero while the issuer's watch stream is
// up (every revocation is pushed within a second), else the time since it
// was last up (or since New, before it ever was). A revocation made in that
// window may not be known here yet; the gateway keeps serving meanwhile
// (see the README: what the gateway does when its revocation view is
// stale).
func (l *List) Age() time.Duration {
	if l.live.Load() {
		return 0
	}
	return max(0, l.opts.Now().Sub(time.Unix(0, l.lastLive.Load())))
}

// NewGRPC returns a list fed by TokenService.WatchRevocations on cc once Run
// is called. The caller attaches the gateway's credentials to cc (per-RPC
// credentials); the issuer allows the watch to gateways and administrators
// only.
func NewGRPC(cc grpc.ClientConnInterface, opts Options) *List {
	l := New(opts)
	l.client = issuerv1.NewTokenServiceClient(cc)
	return l
}

// Revoked reports whether jti has been revoked. The empty jti is never
// revoked here; the verifier rejects tokens without a jti on its own.
func (l *List) Revoked(jti string) bool {
	if jti == "" {
		return false
	}
	l.mu.RLock()
	_, ok := l.entries[jti]
	l.mu.RUnlock()
	return ok
}

// Add records that jti is revoked until the token expires at exp (plus the
// grace). A zero exp, or one beyond MaxTTL, keeps the entry MaxTTL. It calls
// OnRevoke when jti is new and reports whether it was.
func (l *List) Add(jti string, exp time.Time) bool {
	if jti == "" {
		return false
	}
	now := l.opts.Now()
	forget := exp.Add(l.opts.Grace)
	if exp.IsZero() || forget.After(now.Add(l.opts.MaxTTL)) {
		forget = now.Add(l.opts.MaxTTL)
	}
	if !forget.After(now) {
		// The token expired long ago; the verifier refuses it anyway.
		return false
	}
	l.mu.Lock()
	prev, existed := l.entries[jti]
	if !existed || forget.After(prev) {
		l.entries[jti] = forget
	}
	l.mu.Unlock()
	if !existed && l.opts.OnRevoke != nil {
		l.opts.OnRevoke(jti)
	}
	return !existed
}

// Len returns the number of entries (for metrics and tests).
func (l *List) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.entries)
}

// Synced reports whether the list has received the issuer's full set at
// least once. Until then a revoked token may still be accepted; a gateway
// that must not allow that waits for it before serving.
func (l *List) Synced() bool { return l.synced.Load() }

// Prune drops entries whose token has expired (plus the grace).
func (l *List) Prune() {
	now := l.opts.Now()
	l.mu.Lock()
	for jti, forget := range l.entries {
		if !forget.After(now) {
			delete(l.entries, jti)
		}
	}
	l.mu.Unlock()
}

// Run watches the issuer's revocations until ctx is done, reconnecting with
// jittered exponential backoff, and prunes expired entries periodically. A
// list made by New has no source: Run then only prunes.
func (l *List) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(l.opts.PruneInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				l.Prune()
			}
		}
	}()
	defer wg.Wait()
	if l.client == nil {
		<-ctx.Done()
		return
	}
	follow.Run(ctx, follow.Config{What: "revocation watch", MinBackoff: l.opts.MinBackoff, MaxBackoff: l.opts.MaxBackoff,
		Sleep: l.opts.Sleep, Logger: l.opts.Logger}, l.watch)
}

func (l *List) watch(ctx context.Context) (got bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: back as soon as the issuer is (see keyset).
	stream, err := l.client.WatchRevocations(wctx, &issuerv1.WatchRevocationsRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	defer func() {
		if l.live.Swap(false) {
			l.lastLive.Store(l.opts.Now().UnixNano())
		}
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return got, err
		}
		got = true
		l.live.Store(true)
		for _, r := range msg.GetRevocations() {
			var exp time.Time
			if r.GetExpireTime() != nil {
				exp = r.GetExpireTime().AsTime()
			}
			l.Add(r.GetJti(), exp)
		}
		l.synced.Store(true)
	}
}
