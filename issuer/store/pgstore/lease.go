package pgstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of a Lease.
const (
	DefaultLeaseTerm = 5 * time.Second
)

// LeaseConfig configures NewLease.
type LeaseConfig struct {
	// Name of the lease (one row of the leases table), e.g. "key-rotation".
	Name string
	// Holder identifies this replica; it must be unique among the replicas
	// (a random id per process is).
	Holder string
	// Term is how long one acquisition or renewal lasts (default
	// DefaultLeaseTerm): the longest a dead holder keeps the lease.
	Term time.Duration
	// RenewEvery is how often Run acquires or renews (default Term/4), so a
	// holder renews several times per term and another replica takes a
	// dead holder's lease at most Term+RenewEvery after its last renewal.
	RenewEvery time.Duration
	// OnChange, if set, is called from Run when this replica gains (true)
	// or loses (false) the lease, for a log line or a metric.
	OnChange func(held bool)
}

// Lease is a lease with a bounded term in the database: at most one
// replica holds it at a time, as long as the replicas' clocks run at about
// the same rate (the term is measured by the database's clock; a holder
// counts its own validity from before it asked, so it stops believing it
// holds the lease before the database lets anyone else take it).
//
// It implements keys.Gate: MayAdvance is true while this replica holds the
// lease. A table row with an expiry was chosen over a session advisory lock:
// an advisory lock lasts as long as its connection, and a holder cut off by a
// network partition keeps the lock (and keeps believing it does) until TCP
// notices, which may take minutes; a term bounds both sides.
type Lease struct {
	s   *Store
	cfg LeaseConfig

	mu         sync.Mutex
	validUntil time.Time // monotonic; zero when not held
}

// NewLease returns the lease cfg names on s. Call Run to take part.
func (s *Store) NewLease(cfg LeaseConfig) *Lease {
	if cfg.Term <= 0 {
		cfg.Term = DefaultLeaseTerm
	}
	if cfg.RenewEvery <= 0 {
		cfg.RenewEvery = cfg.Term / 4
	}
	return &Lease{s: s, cfg: cfg}
}

// MayAdvance reports whether this replica holds the lease now. It never
// blocks on the database.
func (l *Lease) MayAdvance(context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.validUntil.IsZero() && time.Now().Before(l.validUntil)
}

// Run acquires the lease when it is free or expired, renews it while held,
// every RenewEvery, until ctx is done; it then releases the lease (so another
// replica takes over at once) and returns nil. A failed attempt (the database
// unreachable) is retried at the next one; meanwhile the lease lapses by
// itself when its term ends.
func (l *Lease) Run(ctx context.Context) error {
	t := time.NewTicker(l.cfg.RenewEvery)
	defer t.Stop()
	held := false
	for {
		now := l.try(ctx)
		if now != held {
			held = now
			if l.cfg.OnChange != nil {
				l.cfg.OnChange(held)
			}
		}
		select {
		case <-ctx.Done():
			l.release()
			if held && l.cfg.OnChange != nil {
				l.cfg.OnChange(false)
			}
			return nil
		case <-t.C:
		}
	}
}

// try acquires or renews once and reports whether the lease is held.
func (l *Lease) try(ctx context.Context) bool {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RenewEvery)
	defer cancel()
	var holder string
	err := l.s.pool.QueryRow(ctx, `
		INSERT INTO leases (name, holder, expire_time)
		VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expire_time = EXCLUDED.expire_time
		WHERE leases.holder = EXCLUDED.holder OR leases.expire_time < clock_timestamp()
		RETURNING holder`, l.cfg.Name, l.cfg.Holder, l.cfg.Term.Milliseconds()).Scan(&holder)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil && holder == l.cfg.Holder:
		l.validUntil = start.Add(l.cfg.Term)
		return true
	case errors.Is(err, pgx.ErrNoRows):
		l.validUntil = time.Time{} // another replica holds it
		return false
	default:
		// Unknown: keep what we had; it lapses at validUntil on its own.
		return time.Now().Before(l.validUntil)
	}
}

// release gives the lease up if this replica holds it.
func (l *Lease) release() {
	l.mu.Lock()
	l.validUntil = time.Time{}
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _ = l.s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, l.cfg.Name, l.cfg.Holder)
}
