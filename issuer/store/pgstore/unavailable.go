package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/airlock-dev/airlock/issuer/store"
)

// bound returns ctx limited to the store's per-call timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// classify marks err as store.ErrUnavailable when it says the database
// could not be reached or went away (refused or timed-out connections, a
// connection lost mid-call, a server shutting down), unless the caller's
// own ctx ended (then its error stands). Other errors pass unchanged.
func classify(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrUnavailable) || !unreachable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", "53300": // shutdown, crash, starting up, too many connections
			return true
		}
		return len(pe.Code) == 5 && pe.Code[:2] == "08" // connection exception
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// queryRow is pool.QueryRow bounded by the per-call timeout, its Scan
// error classified.
func (s *Store) queryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	octx, cancel := s.bound(ctx)
	return row{ctx: ctx, row: s.pool.QueryRow(octx, sql, args...), cancel: cancel}
}

type row struct {
	ctx    context.Context
	row    pgx.Row
	cancel context.CancelFunc
}

func (r row) Scan(dest ...any) error {
	defer r.cancel()
	return classify(r.ctx, r.row.Scan(dest...))
}

// exec is pool.Exec bounded by the per-call timeout, its error classified.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	octx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.pool.Exec(octx, sql, args...)
	return tag, classify(ctx, err)
}

// Ping reports whether the database answers within timeout: nil, or an
// error wrapping store.ErrUnavailable. For readiness checks.
func (s *Store) Ping(ctx context.Context, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var one int
	if err := s.pool.QueryRow(pctx, `SELECT 1`).Scan(&one); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}
