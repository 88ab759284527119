// Package keyset keeps the issuer's public keys in memory for the gateway.
//
// A Cache is fed by one source: the issuer's KeyService over gRPC (GetKeys,
// then a WatchKeys stream) or an HTTP JWKS URL (polled, honouring
// Cache-Control). Reads are lock-free: every update installs a new immutable
// snapshot behind an atomic pointer. An unknown kid triggers one
// rate-limited refetch shared by every concurrent caller, so a key rotation
// the watch has not delivered yet does not fail requests, and a flood of
// tokens with invented kids cannot turn into a flood of issuer calls.
//
// The cache fails closed: with no key set it answers ErrNoKeys, and when the
// source has been failing for longer than MaxStaleness it answers ErrStale
// rather than trusting keys that may have been revoked long ago.
package keyset

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/airlock-dev/airlock/gateway/internal/backoff"
	"github.com/airlock-dev/airlock/gateway/internal/follow"
	"github.com/airlock-dev/airlock/pkg/keypolicy"
)

// Errors returned by Lookup. Callers map them to a status once, at the RPC
// boundary: ErrNoKeys and ErrStale mean "cannot verify now" (Unavailable),
// ErrUnknownKey means "this token was not signed by a published key".
var (
	// ErrNoKeys means no key set has been loaded yet.
	ErrNoKeys = errors.New("keyset: no key set loaded")
	// ErrUnknownKey means the kid is not in the key set, even after a refetch
	// (or a refetch was not allowed yet by the rate limit).
	ErrUnknownKey = errors.New("keyset: unknown key id")
	// ErrStale means the source has been failing and the last good key set
	// is older than MaxStaleness.
	ErrStale = errors.New("keyset: key set is stale")
)

// Defaults for Options.
const (
	DefaultMaxStaleness    = 24 * time.Hour
	DefaultRefetchInterval = 5 * time.Second
	DefaultFetchTimeout    = 5 * time.Second
	DefaultMinBackoff      = follow.DefaultMinBackoff // the same for every watch of the issuer
	DefaultMaxBackoff      = follow.DefaultMaxBackoff
	DefaultMinRefresh      = time.Minute
	DefaultMaxRefresh      = time.Hour
)

// Options configure a Cache. Zero values take the defaults above.
type Options struct {
	// MaxStaleness bounds how long the last good key set is used while the
	// source is failing (default 24 h). Past it, Lookup returns ErrStale.
	MaxStaleness time.Duration
	// RefetchInterval is the minimum gap between two refetches caused by an
	// unknown kid (default 5 s). It caps the issuer load that tokens with
	// invented kids can cause.
	RefetchInterval time.Duration
	// FetchTimeout bounds one GetKeys call or HTTP fetch (default 5 s).
	FetchTimeout time.Duration
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between reconnects or failed polls (defaults 200 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
	// MinRefresh and MaxRefresh clamp the HTTP source's poll interval taken
	// from Cache-Control max-age (defaults 1 min and 1 h). Unused by gRPC.
	MinRefresh, MaxRefresh time.Duration
	// Logger receives source failures and key set changes (never key
	// material beyond kids).
	Logger zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnChange is called after every new key set is installed.
	OnChange func()
	// OnKeysRemoved is called with the kids that an update removed, so
	// caches of verified tokens can evict what those keys signed.
	OnKeysRemoved func(kids []string)
	// Sleep waits between reconnects and polls: d or until ctx is done,
	// reporting whether d elapsed. nil means real time; tests inject a
	// fake clock here (with Now).
	Sleep func(ctx context.Context, d time.Duration) bool
}

func (o Options) withDefaults() Options {
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = DefaultMaxStaleness
	}
	if o.RefetchInterval <= 0 {
		o.RefetchInterval = DefaultRefetchInterval
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = DefaultMinRefresh
	}
	if o.MaxRefresh < o.MinRefresh {
		o.MaxRefresh = max(DefaultMaxRefresh, o.MinRefresh)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = backoff.Sleep
	}
	return o
}

// snapshot is one immutable key set. It is never modified after install.
type snapshot struct {
	byKID    map[string]jwk.Key
	all      []jwk.Key
	revision uint64
}

// fetchFunc fetches the current key set from the source. It returns the
// parsed snapshot; a non-nil error leaves the cache unchanged.
type fetchFunc func(ctx context.Context) (*snapshot, error)

// Cache holds the current key set with its revision and the time it was
// last known to be current. All methods are safe for concurrent use; the
// read path (Lookup of a known kid, All, Has) takes no lock.
type Cache struct {
	opts  Options
	log   zerolog.Logger
	fetch fetchFunc
	loop  func(ctx context.Context)

	snap atomic.Pointer[snapshot]
	// confirmed is when the set was last known to be current (unix ns);
	// while live is true the source pushes changes, so the set is current
	// by definition.
	confirmed atomic.Int64
	live      atomic.Bool
	// lastRefetch is when the last unknown-kid refetch started (unix ns).
	lastRefetch atomic.Int64

	installMu sync.Mutex // serialises installs so OnKeysRemoved sees a consistent diff
	sf        singleflight.Group
}

func newCache(opts Options) *Cache {
	opts = opts.withDefaults()
	return &Cache{opts: opts, log: opts.Logger}
}

// Lookup returns the key with the given kid.
//
// A kid not in the set triggers at most one refetch per RefetchInterval,
// shared by every concurrent caller; if the kid is still unknown it returns
// ErrUnknownKey. With no key set it returns ErrNoKeys; when the source has
// been failing for longer than MaxStaleness it returns ErrStale. If ctx ends
// while waiting for a shared refetch it returns ctx.Err(); the refetch itself
// carries on for the other callers.
func (c *Cache) Lookup(ctx context.Context, kid string) (jwk.Key, error) {
	s, err := c.current()
	if err != nil {
		return nil, err
	}
	if k, ok := s.byKID[kid]; ok {
		return k, nil
	}
	if err := c.refetch(ctx); err != nil {
		return nil, err
	}
	s, err = c.current()
	if err != nil {
		return nil, err
	}
	if k, ok := s.byKID[kid]; ok {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// Has reports whether kid is in the current usable set, without
// refetching: false when it was removed, and false for every kid while the
// set is missing or stale. The verifier uses it to stop trusting cached
// verifications.
func (c *Cache) Has(kid string) bool {
	s, err := c.current()
	if err != nil {
		return false
	}
	_, ok := s.byKID[kid]
	return ok
}

// All returns every key in the current set, for tokens without a kid. It
// returns nil when there is no usable set (none loaded, or stale). The
// slice is shared: callers must not modify it.
func (c *Cache) All() []jwk.Key {
	s, err := c.current()
	if err != nil {
		return nil
	}
	return s.all
}

// Ready reports whether the cache can verify tokens now: a non-empty key
// set is loaded and it is not stale. Gateways flip their health to SERVING
// on it.
func (c *Cache) Ready() bool {
	_, err := c.current()
	return err == nil
}

// Revision returns the revision of the current set (0 if none). For the HTTP
// source it counts content changes.
func (c *Cache) Revision() uint64 {
	if s := c.snap.Load(); s != nil {
		return s.revision
	}
	return 0
}

// Age returns how long ago the set was last known to be current: zero while
// a watch stream is live, otherwise the time since the last successful
// fetch or the moment the stream broke. It is zero when no set is loaded.
func (c *Cache) Age() time.Duration {
	if c.snap.Load() == nil || c.live.Load() {
		return 0
	}
	return c.opts.Now().Sub(time.Unix(0, c.confirmed.Load()))
}

// Run runs the source's watch or poll loop until ctx is done.
func (c *Cache) Run(ctx context.Context) { c.loop(ctx) }

func (c *Cache) current() (*snapshot, error) {
	s := c.snap.Load()
	if s == nil || len(s.all) == 0 {
		return nil, ErrNoKeys
	}
	if !c.live.Load() && c.opts.Now().Sub(time.Unix(0, c.confirmed.Load())) > c.opts.MaxStaleness {
		return nil, ErrStale
	}
	return s, nil
}

// refetch runs one rate-limited, single-flight fetch. It returns nil when
// the caller should look again (whether or not a fetch ran) and an error
// only when ctx ended first.
func (c *Cache) refetch(ctx context.Context) error {
	ch := c.sf.DoChan("refetch", func() (any, error) {
		now := c.opts.Now().UnixNano()
		if last := c.lastRefetch.Load(); last != 0 && now-last < int64(c.opts.RefetchInterval) {
			return nil, nil
		}
		c.lastRefetch.Store(now)
		// Detached from the caller: one request giving up must not fail the
		// fetch that every other waiter shares.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
		defer cancel()
		s, err := c.fetch(fctx)
		if err != nil {
			c.log.Warn().Err(err).Msg("key set refetch after unknown kid failed")
			return nil, nil
		}
		c.install(s, false)
		return nil, nil
	})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// install replaces the current set with s and marks it confirmed now.
// Unless force is set, a set with a revision not newer than the current one
// only refreshes the confirmation time: that keeps an answer to a slow
// GetKeys from undoing a newer push.
func (c *Cache) install(s *snapshot, force bool) {
	c.installMu.Lock()
	defer c.installMu.Unlock()
	c.confirmed.Store(c.opts.Now().UnixNano())
	old := c.snap.Load()
	if old != nil && !force && s.revision <= old.revision {
		return
	}
	if old != nil && force && s.revision == old.revision {
		return
	}
	c.snap.Store(s)
	var removed []string
	if old != nil {
		for kid := range old.byKID {
			if _, ok := s.byKID[kid]; !ok {
				removed = append(removed, kid)
			}
		}
	}
	c.log.Info().Uint64("revision", s.revision).Int("keys", len(s.all)).Strs("removed_kids", removed).Msg("key set updated")
	if len(removed) > 0 && c.opts.OnKeysRemoved != nil {
		c.opts.OnKeysRemoved(removed)
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange()
	}
}

// parseSet parses an RFC 7517 JWK Set and keeps only public signature keys
// keypolicy accepts (RSA ≥ 2048 bits, EC P-256, Ed25519). Private key
// material is reduced to the public key so it can never be used or logged.
// A set with no usable key is an error: an empty set must never replace a
// good one.
func parseSet(raw []byte, revision uint64) (*snapshot, error) {
	set, err := jwk.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("keyset: parse JWK Set: %w", err)
	}
	s := &snapshot{byKID: make(map[string]jwk.Key, set.Len()), revision: revision}
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		if u := k.KeyUsage(); u != "" && u != string(jwk.ForSignature) {
			continue
		}
		pub, err := k.PublicKey()
		if err != nil || !supported(pub) {
			continue
		}
		kid := pub.KeyID()
		if kid != "" {
			if _, dup := s.byKID[kid]; dup {
				return nil, fmt.Errorf("keyset: duplicate kid %q in JWK Set", kid)
			}
			s.byKID[kid] = pub
		}
		s.all = append(s.all, pub)
	}
	if len(s.all) == 0 {
		return nil, errors.New("keyset: JWK Set has no usable signature key")
	}
	return s, nil
}

func supported(k jwk.Key) bool {
	var raw any
	if err := k.Raw(&raw); err != nil {
		return false
	}
	return keypolicy.Supported(raw)
}
