// Package limits bounds what one caller may take from the issuer: how often
// a user mints tokens, and how many watch streams a caller holds open. Each
// breach is ResourceExhausted; other callers are unaffected.
package limits

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/api/authn"
)

// maxKeys bounds the per-key state; idle keys are forgotten past it.
const maxKeys = 100_000

// Rate is a per-key token bucket refilled at perMinute per minute with a
// burst of perMinute. Zero perMinute allows everything.
type Rate struct {
	perMinute int
	mu        sync.Mutex
	buckets   map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// NewRate returns a limiter allowing perMinute events per key per minute.
func NewRate(perMinute int) *Rate {
	return &Rate{perMinute: perMinute, buckets: map[string]*bucket{}}
}

// Allow reports whether key may act now, and records the event if so.
func (r *Rate) Allow(key string) bool {
	if r == nil || r.perMinute <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[key]
	if b == nil {
		if len(r.buckets) >= maxKeys {
			r.gcLocked()
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(r.perMinute)/60), r.perMinute)}
		r.buckets[key] = b
	}
	b.seen = time.Now()
	return b.lim.Allow()
}

// Take is Allow in the form tokensvc.Limiter asks for; it never fails.
func (r *Rate) Take(_ context.Context, key string) (bool, error) { return r.Allow(key), nil }

// PerMinute is the configured rate.
func (r *Rate) PerMinute() int { return r.perMinute }

func (r *Rate) gcLocked() {
	cutoff := time.Now().Add(-2 * time.Minute)
	for k, b := range r.buckets {
		if b.seen.Before(cutoff) { // a full minute idle: the bucket is full again anyway
			delete(r.buckets, k)
		}
	}
}

// Streams bounds concurrent server streams per caller.
type Streams struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// NewStreams allows max concurrent streams per caller (0: unlimited).
func NewStreams(max int) *Streams { return &Streams{max: max, open: map[string]int{}} }

// Interceptor limits the streaming methods whose full name contains
// "/Watch". It must run after authentication: an authenticated caller is
// keyed by its user, an anonymous one (WatchKeys is public) by its IP.
func (s *Streams) Interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if s.max <= 0 || !strings.Contains(info.FullMethod, "/Watch") {
			return h(srv, ss)
		}
		key := Caller(ss.Context())
		s.mu.Lock()
		if s.open[key] >= s.max {
			s.mu.Unlock()
			return status.Error(codes.ResourceExhausted, fmt.Sprintf("too many open watch streams for this caller (limit %d)", s.max))
		}
		s.open[key]++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			if s.open[key]--; s.open[key] == 0 {
				delete(s.open, key)
			}
			s.mu.Unlock()
		}()
		return h(srv, ss)
	}
}

// Caller names the caller of ctx for limits: "user:<name>" when
// authenticated, else "ip:<address>".
func Caller(ctx context.Context) string {
	if id, ok := authn.FromContext(ctx); ok {
		return "user:" + id.Username
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		host, _, err := net.SplitHostPort(p.Addr.String())
		if err != nil {
			host = p.Addr.String()
		}
		return "ip:" + host
	}
	return "unknown"
}
