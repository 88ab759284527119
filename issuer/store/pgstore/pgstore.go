// Package pgstore is the issuer's store on PostgreSQL, for several issuer
// replicas sharing one database. It passes the same storetest suite as the
// embedded boltstore.
//
// Concurrency: every write runs in one READ COMMITTED transaction whose first
// statement locks the row that stands for what it writes: the domain's row
// in the revisions table (which the write also increments, so the revision
// rule of store.Store holds) or, for users, the last_user_id counter. Writers
// of one domain therefore run one after another, as bbolt's single writer
// does, and every check a write makes after taking the lock (limits,
// references, fallback cycles) still holds when it commits. Writes that need
// no check beyond a unique or foreign key (PATs, minted tokens) are single
// statements. A transaction the server aborts as a serialization failure or
// deadlock is retried inside the store; callers see only the errors of
// store.Store.
//
// Schema: the migrations in migrations/ are embedded and applied by Open
// with goose under a session advisory lock, so replicas starting together
// apply each migration once. Open refuses a database migrated by a newer
// issuer (ErrSchemaTooNew).
//
// Secrets: the tables hold only PAT hashes and the sealed blobs the caller
// passes; the key-encryption key never reaches the database.
//
// Replicas: a trigger announces every committed revision change on a
// NOTIFY channel; WatchRevisions delivers those of every replica (with a
// full resync after a reconnect), so watch broadcasters can learn of
// changes made elsewhere.
package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/airlock-dev/airlock/issuer/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockID is the advisory lock key Open holds while migrating
// ("airlock" in ASCII), distinct from goose's default so other goose users
// of the same database do not contend with it.
const migrationLockID int64 = 0x6169726c6f636b

// versionTable records the applied migrations.
const versionTable = "airlock_schema_version"

var (
	// ErrSchemaTooNew: the database was migrated by a newer issuer; Open
	// refuses it rather than misread or damage it.
	ErrSchemaTooNew = errors.New("database schema is newer than this issuer supports")
	// ErrNotEmpty: Import into a database that already holds issuer state.
	ErrNotEmpty = errors.New("database already holds issuer state")
)

// maxAttempts bounds the retries of a transaction the server aborted as a
// serialization failure or deadlock.
const maxAttempts = 20

// Store is a store.Store on PostgreSQL.
type Store struct {
	pool          *pgxpool.Pool
	schemaVersion int64
	opTimeout     time.Duration
}

// Bounds on waiting for the database, so an unreachable server fails calls
// with store.ErrUnavailable instead of hanging them.
const (
	// DefaultConnectTimeout applies when the URL sets no connect_timeout.
	DefaultConnectTimeout = 3 * time.Second
	// DefaultOpTimeout bounds one store call (its transaction, retries
	// included), whatever the caller's deadline.
	DefaultOpTimeout = 10 * time.Second
)

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// DSN; TLS as its sslmode says), applies the embedded migrations and returns
// the store. It fails if the database is unreachable within ctx, if a
// migration fails, or with ErrSchemaTooNew. The role needs to create tables
// in its schema (the first element of its search_path).
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx masks the password in what it quotes back.
		return nil, fmt.Errorf("pgstore: parse database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "airlock-issuer"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{pool: pool, opTimeout: DefaultOpTimeout}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect to %s: %w", describeConfig(&cfg.ConnConfig.Config), err)
	}
	if s.schemaVersion, err = migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// SchemaVersion returns the schema version Open left the database at.
func (s *Store) SchemaVersion() int64 { return s.schemaVersion }

// LatestSchemaVersion is the highest schema version this code knows: the
// number of the last embedded migration.
func LatestSchemaVersion() int64 {
	entries, _ := fs.ReadDir(migrations, "migrations")
	var latest int64
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.ParseInt(num, 10, 64); err == nil && v > latest {
			latest = v
		}
	}
	return latest
}

// newProvider returns goose over pool, holding the advisory lock while it
// migrates (polling once a second for up to 5 minutes while another
// replica holds it). Closing the provider leaves pool open.
func newProvider(pool *pgxpool.Pool) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(pool), sub,
		goose.WithSessionLocker(locker), goose.WithTableName(versionTable), goose.WithDisableGlobalRegistry(true))
}

// migrate applies the pending migrations under the advisory lock and
// returns the resulting version.
func migrate(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	p, err := newProvider(pool)
	if err != nil {
		return 0, fmt.Errorf("pgstore: migrations: %w", err)
	}
	defer func() { _ = p.Close() }() // closes only the database/sql view of the pool
	latest := LatestSchemaVersion()
	if _, err := p.Up(ctx); err != nil {
		if v, verr := p.GetDBVersion(ctx); verr == nil && v > latest {
			return 0, tooNew(v, latest)
		}
		return 0, fmt.Errorf("pgstore: apply migrations: %w", err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("pgstore: schema version: %w", err)
	}
	if v > latest {
		return 0, tooNew(v, latest)
	}
	return v, nil
}

func tooNew(v, latest int64) error {
	return fmt.Errorf("%w: the database has schema %d, this issuer knows schema %d at most: run the newer issuer or restore a backup", ErrSchemaTooNew, v, latest)
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// retryable reports whether the server aborted a transaction that would
// succeed when run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// pgCode returns the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// write runs fn in a READ COMMITTED transaction, retrying a serialization
// failure or deadlock with a short jittered pause. fn's error is returned
// unchanged.
func (s *Store) write(ctx context.Context, fn func(pgx.Tx) error) error {
	octx, cancel := s.bound(ctx)
	defer cancel()
	return classify(ctx, s.txn(octx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn))
}

// read runs fn in a read-only REPEATABLE READ transaction: one snapshot
// for every statement, so a revision and the records it counts agree.
func (s *Store) read(ctx context.Context, fn func(pgx.Tx) error) error {
	octx, cancel := s.bound(ctx)
	defer cancel()
	return classify(ctx, s.txn(octx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn))
}

func (s *Store) txn(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, opts, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond))) //nolint:gosec // G404: retry jitter, not a secret
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// bump increments a domain's revision inside tx and returns the new value.
// As the first statement of a write it is also the domain's write lock.
func bump(ctx context.Context, tx pgx.Tx, d store.Domain) (uint64, error) {
	var rev uint64
	err := tx.QueryRow(ctx, `UPDATE revisions SET revision = revision + 1 WHERE domain = $1 RETURNING revision`, string(d)).Scan(&rev)
	if err != nil {
		return 0, fmt.Errorf("pgstore: revision of %s: %w", d, err)
	}
	return rev, nil
}

// lockDomain takes a domain's write lock without changing its revision and
// returns the revision.
func lockDomain(ctx context.Context, tx pgx.Tx, d store.Domain) (uint64, error) {
	var rev uint64
	err := tx.QueryRow(ctx, `SELECT revision FROM revisions WHERE domain = $1 FOR UPDATE`, string(d)).Scan(&rev)
	if err != nil {
		return 0, fmt.Errorf("pgstore: lock %s: %w", d, err)
	}
	return rev, nil
}

// ts is t as a nullable timestamptz: the zero time is NULL. PostgreSQL
// keeps microseconds.
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromTS reverses ts, in UTC.
func fromTS(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return p.UTC()
}

// strs is ss for a NOT NULL text[] column (a nil slice would be NULL).
func strs(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// noEmpty turns an empty slice read back into nil, as boltstore returns it.
func noEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func notFound(err error, format string, a ...any) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf(format+": %w", append(a, store.ErrNotFound)...)
	}
	return fmt.Errorf("pgstore: "+format+": %w", append(a, err)...)
}

// InitInstanceID implements store.Store.
func (s *Store) InitInstanceID(ctx context.Context, id string) (string, error) {
	var out string
	err := s.queryRow(ctx, `INSERT INTO airlock_meta (key, value) VALUES ('instance_id', $1)
		ON CONFLICT (key) DO UPDATE SET value = airlock_meta.value RETURNING value`, id).Scan(&out)
	if err != nil {
		return "", fmt.Errorf("pgstore: instance id: %w", err)
	}
	return out, nil
}

// InitSecret implements store.Store.
func (s *Store) InitSecret(ctx context.Context, name string, sealed []byte) ([]byte, error) {
	var out []byte
	err := s.queryRow(ctx, `INSERT INTO airlock_secrets (name, sealed) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET sealed = airlock_secrets.sealed RETURNING sealed`, name, sealed).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("pgstore: secret %q: %w", name, err)
	}
	return out, nil
}

const userCols = `id, username, role, features, create_time`

func scanUser(row pgx.Row) (store.User, error) {
	var u store.User
	var ct *time.Time
	if err := row.Scan(&u.ID, &u.Username, &u.Role, &u.Features, &ct); err != nil {
		return store.User{}, err
	}
	u.Features, u.CreateTime = noEmpty(u.Features), fromTS(ct)
	return u, nil
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User, maxUsers int) (store.User, error) {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var last uint64
		if err := tx.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'last_user_id' FOR UPDATE`).Scan(&last); err != nil {
			return fmt.Errorf("pgstore: lock users: %w", err)
		}
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)`, u.Username).Scan(&taken); err != nil {
			return fmt.Errorf("pgstore: user %q: %w", u.Username, err)
		}
		if taken {
			return fmt.Errorf("user %q: %w", u.Username, store.ErrAlreadyExists)
		}
		if err := checkLimit(ctx, tx, "users", "user", maxUsers); err != nil {
			return err
		}
		u.ID = last + 1
		if _, err := tx.Exec(ctx, `UPDATE counters SET value = $1 WHERE name = 'last_user_id'`, u.ID); err != nil {
			return fmt.Errorf("pgstore: user id: %w", err)
		}
		_, err := tx.Exec(ctx, `INSERT INTO users (`+userCols+`) VALUES ($1, $2, $3, $4, $5)`,
			u.ID, u.Username, u.Role, strs(u.Features), ts(u.CreateTime))
		if err != nil {
			return fmt.Errorf("pgstore: insert user %q: %w", u.Username, err)
		}
		return nil
	})
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// checkLimit refuses a create when table (under its write lock) holds
// limit rows or more (0: unlimited).
func checkLimit(ctx context.Context, tx pgx.Tx, table, kind string, limit int) error {
	if limit <= 0 {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		return fmt.Errorf("pgstore: count %s: %w", table, err)
	}
	if n >= limit {
		return &store.LimitError{Kind: kind, Count: n, Limit: limit}
	}
	return nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, username string) (store.User, error) {
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE username = $1`, username))
	if err != nil {
		return store.User{}, notFound(err, "user %q", username)
	}
	return u, nil
}

// GetUserByID implements store.Store.
func (s *Store) GetUserByID(ctx context.Context, id uint64) (store.User, error) {
	if id > 1<<63-1 {
		return store.User{}, fmt.Errorf("user id %d: %w", id, store.ErrNotFound)
	}
	u, err := scanUser(s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return store.User{}, notFound(err, "user id %d", id)
	}
	return u, nil
}

// ListUsers implements store.Store. Usernames are ordered bytewise, as
// boltstore orders them, whatever the database's collation.
func (s *Store) ListUsers(ctx context.Context) ([]store.User, error) {
	octx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(octx, `SELECT `+userCols+` FROM users ORDER BY username COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list users: %w", classify(ctx, err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) { return scanUser(r) })
	if err = classify(ctx, err); err != nil {
		return nil, fmt.Errorf("pgstore: list users: %w", err)
	}
	return noEmpty(out), nil
}

const patCols = `id, hash, user_id, username, create_time, expire_time, revoke_time`

func scanPAT(row pgx.Row) (store.PAT, error) {
	var p store.PAT
	var ct, et, rt *time.Time
	if err := row.Scan(&p.ID, &p.Hash, &p.UserID, &p.Username, &ct, &et, &rt); err != nil {
		return store.PAT{}, err
	}
	p.CreateTime, p.ExpireTime, p.RevokeTime = fromTS(ct), fromTS(et), fromTS(rt)
	return p, nil
}

// CreatePAT implements store.Store.
func (s *Store) CreatePAT(ctx context.Context, p store.PAT) error {
	if p.UserID > 1<<63-1 {
		return fmt.Errorf("user id %d: %w", p.UserID, store.ErrNotFound)
	}
	_, err := s.exec(ctx, `INSERT INTO pats (`+patCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.ID, p.Hash, p.UserID, p.Username, ts(p.CreateTime), ts(p.ExpireTime), ts(p.RevokeTime))
	switch pgCode(err) {
	case "":
		if err != nil {
			return fmt.Errorf("pgstore: insert personal access token: %w", err)
		}
		return nil
	case uniqueViolation:
		return fmt.Errorf("personal access token: %w", store.ErrAlreadyExists)
	case foreignKeyViolation:
		return fmt.Errorf("user id %d: %w", p.UserID, store.ErrNotFound)
	default:
		return fmt.Errorf("pgstore: insert personal access token: %w", err)
	}
}

// GetPATByHash implements store.Store.
func (s *Store) GetPATByHash(ctx context.Context, hash []byte) (store.PAT, error) {
	p, err := scanPAT(s.queryRow(ctx, `SELECT `+patCols+` FROM pats WHERE hash = $1`, hash))
	if err != nil {
		return store.PAT{}, notFound(err, "personal access token")
	}
	return p, nil
}

// RevokePAT implements store.Store.
func (s *Store) RevokePAT(ctx context.Context, id string, at time.Time) (store.PAT, error) {
	p, err := scanPAT(s.queryRow(ctx, `UPDATE pats SET revoke_time = COALESCE(revoke_time, $2)
		WHERE id = $1 RETURNING `+patCols, id, ts(at)))
	if err != nil {
		return store.PAT{}, notFound(err, "personal access token %q", id)
	}
	return p, nil
}

const keyCols = `kid, alg, state, sealed, create_time, activate_time, retire_time, expire_time`

// ListKeys implements store.Store.
func (s *Store) ListKeys(ctx context.Context) ([]store.SigningKey, uint64, error) {
	var keys []store.SigningKey
	var rev uint64
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT revision FROM revisions WHERE domain = 'keys'`).Scan(&rev); err != nil {
			return err
		}
		var err error
		keys, err = listKeys(ctx, tx)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pgstore: list keys: %w", err)
	}
	return keys, rev, nil
}

func listKeys(ctx context.Context, tx pgx.Tx) ([]store.SigningKey, error) {
	rows, err := tx.Query(ctx, `SELECT `+keyCols+` FROM signing_keys ORDER BY position`)
	if err != nil {
		return nil, err
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.SigningKey, error) {
		var k store.SigningKey
		var ct, at, rt, et *time.Time
		err := r.Scan(&k.KID, &k.Alg, &k.State, &k.Sealed, &ct, &at, &rt, &et)
		k.CreateTime, k.ActivateTime, k.RetireTime, k.ExpireTime = fromTS(ct), fromTS(at), fromTS(rt), fromTS(et)
		return k, err
	})
	return noEmpty(keys), err
}

// ReplaceKeys implements store.Store.
func (s *Store) ReplaceKeys(ctx context.Context, keys []store.SigningKey) (uint64, error) {
	var rev uint64
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		if rev, err = bump(ctx, tx, store.DomainKeys); err != nil {
			return err
		}
		return putKeys(ctx, tx, keys)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: replace keys: %w", err)
	}
	return rev, nil
}

// SwapKeys implements store.Store.
func (s *Store) SwapKeys(ctx context.Context, keys []store.SigningKey, ifRevision uint64) (uint64, error) {
	var rev uint64
	err := s.write(ctx, func(tx pgx.Tx) error {
		cur, err := lockDomain(ctx, tx, store.DomainKeys)
		if err != nil {
			return err
		}
		if cur != ifRevision {
			return fmt.Errorf("keys at revision %d, not %d: %w", cur, ifRevision, store.ErrConflict)
		}
		if rev, err = bump(ctx, tx, store.DomainKeys); err != nil {
			return err
		}
		return putKeys(ctx, tx, keys)
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: swap keys: %w", err)
	}
	return rev, nil
}

func putKeys(ctx context.Context, tx pgx.Tx, keys []store.SigningKey) error {
	if _, err := tx.Exec(ctx, `DELETE FROM signing_keys`); err != nil {
		return err
	}
	for i, k := range keys {
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (position, `+keyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			i, k.KID, k.Alg, k.State, k.Sealed, ts(k.CreateTime), ts(k.ActivateTime), ts(k.RetireTime), ts(k.ExpireTime))
		if err != nil {
			return err
		}
	}
	return nil
}

// RecordToken implements store.Store.
func (s *Store) RecordToken(ctx context.Context, t store.IssuedToken) error {
	if t.UserID > 1<<63-1 {
		return fmt.Errorf("pgstore: token %q: user id %d out of range", t.JTI, t.UserID)
	}
	tag, err := s.exec(ctx, `INSERT INTO issued_tokens (jti, user_id, expire_time) VALUES ($1, $2, $3)
		ON CONFLICT (jti) DO NOTHING`, t.JTI, t.UserID, ts(t.ExpireTime))
	if err != nil {
		return fmt.Errorf("pgstore: record token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %q: %w", t.JTI, store.ErrAlreadyExists)
	}
	return nil
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, jti string) (store.IssuedToken, error) {
	t := store.IssuedToken{JTI: jti}
	var et *time.Time
	err := s.queryRow(ctx, `SELECT user_id, expire_time FROM issued_tokens WHERE jti = $1`, jti).Scan(&t.UserID, &et)
	if err != nil {
		return store.IssuedToken{}, notFound(err, "token %q", jti)
	}
	t.ExpireTime = fromTS(et)
	return t, nil
}

const revocationCols = `jti, seq, expire_time, revoke_time`

func scanRevocation(row pgx.Row) (store.Revocation, error) {
	var r store.Revocation
	var et, rt *time.Time
	if err := row.Scan(&r.JTI, &r.Seq, &et, &rt); err != nil {
		return store.Revocation{}, err
	}
	r.ExpireTime, r.RevokeTime = fromTS(et), fromTS(rt)
	return r, nil
}

// Revoke implements store.Store.
func (s *Store) Revoke(ctx context.Context, r store.Revocation) (store.Revocation, bool, error) {
	created := false
	out := r
	err := s.write(ctx, func(tx pgx.Tx) error {
		created = false
		if _, err := lockDomain(ctx, tx, store.DomainRevocations); err != nil {
			return err
		}
		old, err := scanRevocation(tx.QueryRow(ctx, `SELECT `+revocationCols+` FROM revocations WHERE jti = $1`, r.JTI))
		if err == nil {
			out = old
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: revocation %q: %w", r.JTI, err)
		}
		seq, err := bump(ctx, tx, store.DomainRevocations)
		if err != nil {
			return err
		}
		out = r
		out.Seq, created = seq, true
		_, err = tx.Exec(ctx, `INSERT INTO revocations (`+revocationCols+`) VALUES ($1, $2, $3, $4)`,
			out.JTI, out.Seq, ts(out.ExpireTime), ts(out.RevokeTime))
		if err != nil {
			return fmt.Errorf("pgstore: insert revocation: %w", err)
		}
		return nil
	})
	if err != nil {
		return store.Revocation{}, false, err
	}
	return out, created, nil
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(ctx context.Context) ([]store.Revocation, uint64, error) {
	var out []store.Revocation
	var rev uint64
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT revision FROM revisions WHERE domain = 'revocations'`).Scan(&rev); err != nil {
			return err
		}
		var err error
		out, err = listRevocations(ctx, tx)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("pgstore: list revocations: %w", err)
	}
	return out, rev, nil
}

func listRevocations(ctx context.Context, tx pgx.Tx) ([]store.Revocation, error) {
	rows, err := tx.Query(ctx, `SELECT `+revocationCols+` FROM revocations ORDER BY seq`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Revocation, error) { return scanRevocation(r) })
	return noEmpty(out), err
}

// PruneTokens implements store.Store.
func (s *Store) PruneTokens(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM issued_tokens WHERE expire_time IS NULL OR expire_time <= $1`, now); err != nil {
			return err
		}
		if _, err := lockDomain(ctx, tx, store.DomainRevocations); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM revocations WHERE expire_time IS NULL OR expire_time <= $1`, now)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		if n > 0 {
			// Watchers compare revisions; a shrink is a change too.
			_, err = bump(ctx, tx, store.DomainRevocations)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: prune tokens: %w", err)
	}
	return n, nil
}

const modelCols = `name, family, provider, endpoint, identifier, sealed_api_key, trusted_networks, fallback, api_version, create_time, update_time`

func scanModel(row pgx.Row) (store.Model, error) {
	var m store.Model
	var ct, ut *time.Time
	err := row.Scan(&m.Name, &m.Family, &m.Provider, &m.Endpoint, &m.Identifier, &m.SealedAPIKey,
		&m.TrustedNetworks, &m.Fallback, &m.APIVersion, &ct, &ut)
	if err != nil {
		return store.Model{}, err
	}
	m.TrustedNetworks, m.CreateTime, m.UpdateTime = noEmpty(m.TrustedNetworks), fromTS(ct), fromTS(ut)
	return m, nil
}

func modelArgs(m store.Model) []any {
	return []any{m.Name, m.Family, m.Provider, m.Endpoint, m.Identifier, m.SealedAPIKey,
		strs(m.TrustedNetworks), m.Fallback, m.APIVersion, ts(m.CreateTime), ts(m.UpdateTime)}
}

func getModel(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (store.Model, error) {
	m, err := scanModel(q.QueryRow(ctx, `SELECT `+modelCols+` FROM models WHERE name = $1`, name))
	if err != nil {
		return store.Model{}, notFound(err, "model %q", name)
	}
	return m, nil
}

func modelExists(ctx context.Context, tx pgx.Tx, name string) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM models WHERE name = $1)`, name).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("pgstore: model %q: %w", name, err)
	}
	return ok, nil
}

// checkFallback checks, inside tx under the models lock, that m's fallback
// exists and that following fallbacks from it never leads back to m. The
// stored chains are acyclic (every write ran this check under the lock), so
// the walk ends after at most one step per stored model.
func checkFallback(ctx context.Context, tx pgx.Tx, m store.Model) error {
	if m.Fallback == "" {
		return nil
	}
	if m.Fallback == m.Name {
		return fmt.Errorf("model %q is its own fallback: %w", m.Name, store.ErrCycle)
	}
	ok, err := modelExists(ctx, tx, m.Fallback)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("fallback model %q: %w", m.Fallback, store.ErrReferenceNotFound)
	}
	seen := map[string]bool{m.Name: true}
	for next := m.Fallback; next != ""; {
		if seen[next] {
			return fmt.Errorf("fallback chain through %q forms a cycle: %w", next, store.ErrCycle)
		}
		seen[next] = true
		err := tx.QueryRow(ctx, `SELECT fallback FROM models WHERE name = $1`, next).Scan(&next)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // a dangling link further on is not this write's doing
		}
		if err != nil {
			return fmt.Errorf("pgstore: fallback chain: %w", err)
		}
	}
	return nil
}

// CreateModel implements store.Store.
func (s *Store) CreateModel(ctx context.Context, m store.Model, maxModels int) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := bump(ctx, tx, store.DomainModels); err != nil {
			return err
		}
		ok, err := modelExists(ctx, tx, m.Name)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("model %q: %w", m.Name, store.ErrAlreadyExists)
		}
		if err := checkFallback(ctx, tx, m); err != nil {
			return err
		}
		if err := checkLimit(ctx, tx, "models", "model", maxModels); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO models (`+modelCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`, modelArgs(m)...); err != nil {
			return fmt.Errorf("pgstore: insert model %q: %w", m.Name, err)
		}
		return nil
	})
}

// UpdateModel implements store.Store. update runs once per attempt of the
// transaction (more than once only after a retried serialization failure).
func (s *Store) UpdateModel(ctx context.Context, name string, update func(old store.Model) (store.Model, error)) (store.Model, error) {
	var m store.Model
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := bump(ctx, tx, store.DomainModels); err != nil {
			return err
		}
		old, err := getModel(ctx, tx, name)
		if err != nil {
			return err
		}
		if m, err = update(old); err != nil {
			return err
		}
		if m.Name != name {
			return fmt.Errorf("pgstore: update of model %q renamed it to %q", name, m.Name)
		}
		if err := checkFallback(ctx, tx, m); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE models SET (`+modelCols+`) = ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WHERE name = $1`, modelArgs(m)...)
		if err != nil {
			return fmt.Errorf("pgstore: update model %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return store.Model{}, err
	}
	return m, nil
}

// GetModel implements store.Store.
func (s *Store) GetModel(ctx context.Context, name string) (store.Model, error) {
	return getModel(ctx, s.pool, name)
}

// DeleteModel implements store.Store.
func (s *Store) DeleteModel(ctx context.Context, name string) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := bump(ctx, tx, store.DomainModels); err != nil {
			return err
		}
		ok, err := modelExists(ctx, tx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("model %q: %w", name, store.ErrNotFound)
		}
		var user string
		err = tx.QueryRow(ctx, `SELECT feature FROM feature_settings WHERE model = $1 ORDER BY feature LIMIT 1`, name).Scan(&user)
		if err == nil {
			return fmt.Errorf("model %q is used by feature %q: %w", name, user, store.ErrInUse)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: feature settings: %w", err)
		}
		err = tx.QueryRow(ctx, `SELECT name FROM models WHERE fallback = $1 AND name <> $1 ORDER BY name LIMIT 1`, name).Scan(&user)
		if err == nil {
			return fmt.Errorf("model %q is the fallback of model %q: %w", name, user, store.ErrInUse)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: fallbacks: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM models WHERE name = $1`, name); err != nil {
			return fmt.Errorf("pgstore: delete model %q: %w", name, err)
		}
		return nil
	})
}

// SetFeatureSetting implements store.Store.
func (s *Store) SetFeatureSetting(ctx context.Context, fs store.FeatureSetting) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		if _, err := bump(ctx, tx, store.DomainModels); err != nil {
			return err
		}
		if fs.Model != "" {
			ok, err := modelExists(ctx, tx, fs.Model)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("model %q: %w", fs.Model, store.ErrReferenceNotFound)
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO feature_settings (feature, model, disabled) VALUES ($1, $2, $3)
			ON CONFLICT (feature) DO UPDATE SET model = EXCLUDED.model, disabled = EXCLUDED.disabled`, fs.Feature, fs.Model, fs.Disabled)
		if err != nil {
			return fmt.Errorf("pgstore: feature setting %q: %w", fs.Feature, err)
		}
		return nil
	})
}

// ModelConfig implements store.Store.
func (s *Store) ModelConfig(ctx context.Context) (store.ModelConfig, error) {
	var c store.ModelConfig
	err := s.read(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT revision FROM revisions WHERE domain = 'models'`).Scan(&c.Revision); err != nil {
			return err
		}
		var err error
		if c.Models, err = listModels(ctx, tx); err != nil {
			return err
		}
		c.Settings, err = listSettings(ctx, tx)
		return err
	})
	if err != nil {
		return store.ModelConfig{}, fmt.Errorf("pgstore: model configuration: %w", err)
	}
	return c, nil
}

func listModels(ctx context.Context, tx pgx.Tx) ([]store.Model, error) {
	rows, err := tx.Query(ctx, `SELECT `+modelCols+` FROM models ORDER BY name COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Model, error) { return scanModel(r) })
	return noEmpty(out), err
}

func listSettings(ctx context.Context, tx pgx.Tx) ([]store.FeatureSetting, error) {
	rows, err := tx.Query(ctx, `SELECT feature, model, disabled FROM feature_settings ORDER BY feature COLLATE "C"`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.FeatureSetting, error) {
		var fs store.FeatureSetting
		err := r.Scan(&fs.Feature, &fs.Model, &fs.Disabled)
		return fs, err
	})
	return noEmpty(out), err
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context, d store.Domain) (uint64, error) {
	var rev uint64
	err := s.queryRow(ctx, `SELECT revision FROM revisions WHERE domain = $1`, string(d)).Scan(&rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: revision of %s: %w", d, err)
	}
	return rev, nil
}
