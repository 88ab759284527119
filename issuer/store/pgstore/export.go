package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/issuer/store"
)

// dataTables are the tables that hold records, in the order Import fills
// them (users before the PATs that reference them).
var dataTables = []string{"users", "pats", "signing_keys", "issued_tokens", "revocations", "models", "feature_settings", "airlock_secrets"}

// Import writes snap into an empty database in one transaction: records,
// user ids, the last assigned user id, revisions and the instance id, as
// they are (secrets stay hashed or sealed). ErrNotEmpty if the database
// holds any record, an instance id or a revision above 0; nothing is
// written then. Every domain's lock is held throughout, so an issuer
// writing to the database at the same time waits or makes Import fail.
func (s *Store) Import(ctx context.Context, snap store.Snapshot) error {
	err := s.txn(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error { // unbounded: a large import takes long
		if err := lockEmpty(ctx, tx); err != nil {
			return err
		}
		if err := importMeta(ctx, tx, snap); err != nil {
			return err
		}
		return importRecords(ctx, tx, snap)
	})
	if errors.Is(err, ErrNotEmpty) {
		return err
	}
	if err != nil {
		return fmt.Errorf("pgstore: import: %w", err)
	}
	return nil
}

// lockEmpty takes every domain's lock and returns ErrNotEmpty unless the
// database holds no record, instance id, revision or counter above 0.
func lockEmpty(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM revisions FOR UPDATE`); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM counters FOR UPDATE`); err != nil {
		return err
	}
	var used bool
	q := `SELECT EXISTS (SELECT 1 FROM airlock_meta) OR EXISTS (SELECT 1 FROM revisions WHERE revision > 0)
		OR EXISTS (SELECT 1 FROM counters WHERE value > 0)`
	for _, t := range dataTables {
		q += ` OR EXISTS (SELECT 1 FROM ` + t + `)`
	}
	if err := tx.QueryRow(ctx, q).Scan(&used); err != nil {
		return err
	}
	if used {
		return ErrNotEmpty
	}
	return nil
}

// importMeta writes the instance id, the sealed secrets, the revisions and
// the last assigned user id.
func importMeta(ctx context.Context, tx pgx.Tx, snap store.Snapshot) error {
	if snap.InstanceID != "" {
		if _, err := tx.Exec(ctx, `INSERT INTO airlock_meta (key, value) VALUES ('instance_id', $1)`, snap.InstanceID); err != nil {
			return err
		}
	}
	for name, sealed := range snap.Secrets {
		if _, err := tx.Exec(ctx, `INSERT INTO airlock_secrets (name, sealed) VALUES ($1, $2)`, name, sealed); err != nil {
			return err
		}
	}
	for d, rev := range snap.Revisions {
		tag, err := tx.Exec(ctx, `UPDATE revisions SET revision = $2 WHERE domain = $1`, string(d), rev)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("unknown domain %q", d)
		}
	}
	_, err := tx.Exec(ctx, `UPDATE counters SET value = $1 WHERE name = 'last_user_id'`, snap.LastUserID)
	return err
}

// importRecords copies every record table, users before the PATs that
// reference them.
func importRecords(ctx context.Context, tx pgx.Tx, snap store.Snapshot) error {
	copyRows := func(table string, cols []string, n int, row func(i int) []any) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i), nil }))
		if err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
		return nil
	}
	steps := []func() error{
		func() error {
			return copyRows("users", []string{"id", "username", "role", "features", "create_time"}, len(snap.Users), func(i int) []any {
				u := snap.Users[i]
				return []any{u.ID, u.Username, u.Role, strs(u.Features), ts(u.CreateTime)}
			})
		},
		func() error {
			return copyRows("pats", []string{"id", "hash", "user_id", "username", "create_time", "expire_time", "revoke_time"}, len(snap.PATs), func(i int) []any {
				p := snap.PATs[i]
				return []any{p.ID, p.Hash, p.UserID, p.Username, ts(p.CreateTime), ts(p.ExpireTime), ts(p.RevokeTime)}
			})
		},
		func() error {
			if err := putKeys(ctx, tx, snap.Keys); err != nil {
				return fmt.Errorf("signing_keys: %w", err)
			}
			return nil
		},
		func() error {
			return copyRows("issued_tokens", []string{"jti", "user_id", "expire_time"}, len(snap.Tokens), func(i int) []any {
				t := snap.Tokens[i]
				return []any{t.JTI, t.UserID, ts(t.ExpireTime)}
			})
		},
		func() error {
			return copyRows("revocations", []string{"jti", "seq", "expire_time", "revoke_time"}, len(snap.Revocations), func(i int) []any {
				r := snap.Revocations[i]
				return []any{r.JTI, r.Seq, ts(r.ExpireTime), ts(r.RevokeTime)}
			})
		},
		func() error {
			return copyRows("models", []string{"name", "family", "provider", "endpoint", "identifier", "sealed_api_key", "trusted_networks",
				"fallback", "api_version", "create_time", "update_time"}, len(snap.Models), func(i int) []any { return modelArgs(snap.Models[i]) })
		},
		func() error {
			return copyRows("feature_settings", []string{"feature", "model", "disabled"}, len(snap.Settings), func(i int) []any {
				fs := snap.Settings[i]
				return []any{fs.Feature, fs.Model, fs.Disabled}
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// Export returns the whole state at one snapshot, in the shape Import
// takes.
func (s *Store) Export(ctx context.Context) (store.Snapshot, error) {
	snap := store.Snapshot{Revisions: map[store.Domain]uint64{}}
	err := s.txn(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error { // unbounded: a large export takes long
		err := tx.QueryRow(ctx, `SELECT value FROM airlock_meta WHERE key = 'instance_id'`).Scan(&snap.InstanceID)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT value FROM counters WHERE name = 'last_user_id'`).Scan(&snap.LastUserID); err != nil {
			return err
		}
		if err := exportSecrets(ctx, tx, &snap); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT domain, revision FROM revisions`)
		if err != nil {
			return err
		}
		var d string
		var rev uint64
		if _, err := pgx.ForEachRow(rows, []any{&d, &rev}, func() error { snap.Revisions[store.Domain(d)] = rev; return nil }); err != nil {
			return err
		}
		if rows, err = tx.Query(ctx, `SELECT `+userCols+` FROM users ORDER BY username COLLATE "C"`); err != nil {
			return err
		}
		if snap.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.User, error) { return scanUser(r) }); err != nil {
			return err
		}
		if rows, err = tx.Query(ctx, `SELECT `+patCols+` FROM pats ORDER BY id COLLATE "C"`); err != nil {
			return err
		}
		if snap.PATs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PAT, error) { return scanPAT(r) }); err != nil {
			return err
		}
		if snap.Keys, err = listKeys(ctx, tx); err != nil {
			return err
		}
		if rows, err = tx.Query(ctx, `SELECT jti, user_id, expire_time FROM issued_tokens ORDER BY jti COLLATE "C"`); err != nil {
			return err
		}
		if snap.Tokens, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.IssuedToken, error) {
			var t store.IssuedToken
			var et *time.Time
			err := r.Scan(&t.JTI, &t.UserID, &et)
			t.ExpireTime = fromTS(et)
			return t, err
		}); err != nil {
			return err
		}
		if snap.Revocations, err = listRevocations(ctx, tx); err != nil {
			return err
		}
		if snap.Models, err = listModels(ctx, tx); err != nil {
			return err
		}
		snap.Settings, err = listSettings(ctx, tx)
		return err
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("pgstore: export: %w", err)
	}
	snap.Users, snap.PATs, snap.Tokens = noEmpty(snap.Users), noEmpty(snap.PATs), noEmpty(snap.Tokens)
	return snap, nil
}

// exportSecrets reads every sealed secret into snap.Secrets (nil when none).
func exportSecrets(ctx context.Context, tx pgx.Tx, snap *store.Snapshot) error {
	rows, err := tx.Query(ctx, `SELECT name, sealed FROM airlock_secrets`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var sealed []byte
		if err := rows.Scan(&name, &sealed); err != nil {
			return err
		}
		if snap.Secrets == nil {
			snap.Secrets = map[string][]byte{}
		}
		snap.Secrets[name] = sealed
	}
	return rows.Err()
}
