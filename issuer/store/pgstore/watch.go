package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/issuer/store"
)

// notifyChannel is the channel the revisions trigger (migration 00002)
// announces on.
const notifyChannel = "airlock_revisions"

// Change says that a domain's revision reached Revision, by a write of any
// replica (this one's included). Resync marks a change read back after
// (re)connecting or on the periodic check, rather than pushed: a
// notification may have been lost, so the receiver should compare with what
// it holds.
type Change struct {
	Domain   store.Domain
	Revision uint64
	Resync   bool
}

// WatchOptions tune WatchRevisions. Zero values take the defaults.
type WatchOptions struct {
	// ResyncEvery reads every domain's revision this often even when
	// connected (default 30 s), bounding how long a lost notification goes
	// unnoticed.
	ResyncEvery time.Duration
	// OnDisconnect, if set, is called with the error that ended a listening
	// connection, before reconnecting (for a log line or a metric).
	OnDisconnect func(error)
}

// WatchRevisions delivers every committed revision change of every domain to
// fn, from one goroutine (the caller's), until ctx is done; it then returns
// ctx's error. It listens on a connection of its own (not the pool's).
// After each (re)connect, once listening, and every ResyncEvery, it reads
// every domain's revision and delivers it with Resync set, so nothing
// committed while it was not listening is missed. A lost connection is
// reopened with jittered backoff (100 ms doubling to 5 s). fn may see a
// revision more than once or out of order across a resync; receivers keep
// the highest (broadcast.Hub.Publish already ignores older revisions).
// fn must return quickly: notifications wait while it runs.
func (s *Store) WatchRevisions(ctx context.Context, opts WatchOptions, fn func(Change)) error {
	if opts.ResyncEvery <= 0 {
		opts.ResyncEvery = 30 * time.Second
	}
	backoff := 100 * time.Millisecond
	for {
		err := s.listen(ctx, opts.ResyncEvery, fn, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if opts.OnDisconnect != nil {
			opts.OnDisconnect(err)
		}
		pause := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1)) //nolint:gosec // G404: reconnect jitter, not a secret
		backoff = min(2*backoff, 5*time.Second)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// listen runs one listening connection until it fails or ctx is done.
// connected is called once it listens.
func (s *Store) listen(ctx context.Context, resyncEvery time.Duration, fn func(Change), connected func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "airlock-issuer-watch"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("pgstore: watch: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }() // a listener connection: nothing to flush
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("pgstore: watch: listen: %w", err)
	}
	connected()
	for {
		// Listening first, then reading: a change committed in between is
		// both read here and notified, never neither.
		if err := resync(ctx, conn, fn); err != nil {
			return err
		}
		next := time.Now().Add(resyncEvery)
		for time.Now().Before(next) {
			wctx, cancel := context.WithDeadline(ctx, next)
			n, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed() {
					break // time to resync
				}
				return fmt.Errorf("pgstore: watch: %w", err)
			}
			if c, ok := parseChange(n.Payload); ok {
				fn(c)
			}
		}
	}
}

// resync delivers every domain's current revision.
func resync(ctx context.Context, conn *pgx.Conn, fn func(Change)) error {
	rows, err := conn.Query(ctx, `SELECT domain, revision FROM revisions ORDER BY domain`)
	if err != nil {
		return fmt.Errorf("pgstore: watch: resync: %w", err)
	}
	type rr struct {
		d   string
		rev uint64
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rr, error) {
		var x rr
		err := r.Scan(&x.d, &x.rev)
		return x, err
	})
	if err != nil {
		return fmt.Errorf("pgstore: watch: resync: %w", err)
	}
	for _, x := range all {
		fn(Change{Domain: store.Domain(x.d), Revision: x.rev, Resync: true})
	}
	return nil
}

// parseChange parses a "<domain>:<revision>" payload.
func parseChange(payload string) (Change, bool) {
	d, r, ok := strings.Cut(payload, ":")
	if !ok {
		return Change{}, false
	}
	rev, err := strconv.ParseUint(r, 10, 64)
	if err != nil {
		return Change{}, false
	}
	return Change{Domain: store.Domain(d), Revision: rev}, true
}
