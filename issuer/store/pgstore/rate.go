package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Rate is a per-key token bucket in the database, so every replica draws
// from the same bucket: a user gets perMinute mints a minute (burst
// perMinute) from all replicas together, not from each. It implements
// tokensvc.Limiter. Each Take is one statement (an upsert under the key's
// row lock), refilled by the database's clock.
type Rate struct {
	s         *Store
	perMinute int
}

// NewRate returns a limiter of perMinute events per key per minute on s.
// perMinute <= 0 allows everything without touching the database.
func (s *Store) NewRate(perMinute int) *Rate { return &Rate{s: s, perMinute: perMinute} }

// Take reports whether key may act now and records the event if so. It
// returns an error wrapping store.ErrUnavailable when the database is
// unreachable.
func (r *Rate) Take(ctx context.Context, key string) (bool, error) {
	if r.perMinute <= 0 {
		return true, nil
	}
	var left float64
	err := r.s.queryRow(ctx, `
		INSERT INTO rate_buckets AS b (key, tokens, update_time) VALUES ($1, $2 - 1, clock_timestamp())
		ON CONFLICT (key) DO UPDATE
		SET tokens = LEAST($2, b.tokens + EXTRACT(EPOCH FROM clock_timestamp() - b.update_time) * $2 / 60.0) - 1,
		    update_time = clock_timestamp()
		WHERE LEAST($2, b.tokens + EXTRACT(EPOCH FROM clock_timestamp() - b.update_time) * $2 / 60.0) >= 1
		RETURNING tokens`, key, float64(r.perMinute)).Scan(&left)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil // the bucket is empty; nothing was written
	default:
		return false, fmt.Errorf("pgstore: rate %s: %w", key, err)
	}
}

// PerMinute is the configured rate.
func (r *Rate) PerMinute() int { return r.perMinute }
