// Package follow keeps what one issuer replica publishes (key set, model
// configuration, revocations) in step with a store that several replicas
// share. The store pushes every committed revision change of any replica
// (pgstore.WatchRevisions); follow reloads the domain that changed, from a
// worker of its own, so the push never waits on a reload and a burst of
// changes costs one reload per domain.
//
// Invariant: once a revision r of a domain has been delivered, that domain's
// Target is reloaded until its Revision is at least r (retrying a failed
// reload), unless Run is stopped first.
package follow

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/store"
)

// Target is what follows one domain: a publisher that reloads itself from
// the store.
type Target struct {
	// Revision returns the revision this replica publishes now.
	Revision func() uint64
	// Reload reads the domain from the store and publishes it (a revision
	// not newer than the published one is ignored by the publisher).
	Reload func(ctx context.Context) error
}

// Watch delivers revision changes to fn until ctx is done (pgstore's
// WatchRevisions, adapted). fn does not block.
type Watch func(ctx context.Context, fn func(d store.Domain, rev uint64)) error

// Config configures Run.
type Config struct {
	Watch   Watch
	Targets map[store.Domain]Target
	// RetryEvery is the pause before a failed reload is tried again
	// (default 500 ms).
	RetryEvery time.Duration
	// ReloadTimeout bounds one reload (default 5 s).
	ReloadTimeout time.Duration
	Logger        zerolog.Logger
}

// Run follows the store until ctx is done, then returns nil. A domain
// without a Target is ignored.
func Run(ctx context.Context, cfg Config) error {
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = 500 * time.Millisecond
	}
	if cfg.ReloadTimeout <= 0 {
		cfg.ReloadTimeout = 5 * time.Second
	}
	f := &follower{cfg: cfg, wanted: map[store.Domain]uint64{}, wake: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.work(ctx)
	}()
	_ = cfg.Watch(ctx, f.deliver) // returns once ctx is done
	wg.Wait()
	return nil
}

type follower struct {
	cfg    Config
	mu     sync.Mutex
	wanted map[store.Domain]uint64 // highest revision delivered per domain
	wake   chan struct{}
}

// deliver records a revision and wakes the worker. It never blocks.
func (f *follower) deliver(d store.Domain, rev uint64) {
	if _, ok := f.cfg.Targets[d]; !ok {
		return
	}
	f.mu.Lock()
	if rev > f.wanted[d] {
		f.wanted[d] = rev
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// work reloads every domain that is behind, whenever woken.
func (f *follower) work(ctx context.Context) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-retry:
		}
		retry = nil
		if f.reloadBehind(ctx) {
			retry = time.After(f.cfg.RetryEvery)
		}
	}
}

// reloadBehind reloads each domain whose published revision is below the
// delivered one, and reports whether one is still behind.
func (f *follower) reloadBehind(ctx context.Context) (behind bool) {
	f.mu.Lock()
	wanted := make(map[store.Domain]uint64, len(f.wanted))
	for d, r := range f.wanted {
		wanted[d] = r
	}
	f.mu.Unlock()
	for d, rev := range wanted {
		t := f.cfg.Targets[d]
		if t.Revision() >= rev {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, f.cfg.ReloadTimeout)
		err := t.Reload(rctx)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			f.cfg.Logger.Warn().Err(err).Str("domain", string(d)).Uint64("revision", rev).Msg("reloading a change made by another replica failed; retrying")
			behind = true
			continue
		}
		if t.Revision() < rev {
			behind = true // read before the change committed everywhere; read again
		}
	}
	return behind
}
