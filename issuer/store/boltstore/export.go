package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-dev/airlock/issuer/store"
)

// SchemaVersion returns the on-disk format version Open left the file at.
func (s *Store) SchemaVersion() int64 { return schemaVersion }

// Export returns the whole state in one read transaction (issuer
// migrate-store copies it into another backend).
func (s *Store) Export(_ context.Context) (store.Snapshot, error) {
	snap := store.Snapshot{Revisions: map[store.Domain]uint64{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		snap.InstanceID = string(m.Get(kInstanceID))
		snap.LastUserID = readU64(m, kNextUserID)
		c := m.Cursor()
		for k, v := c.Seek([]byte(secretPrefix)); k != nil && bytes.HasPrefix(k, []byte(secretPrefix)); k, v = c.Next() {
			if snap.Secrets == nil {
				snap.Secrets = map[string][]byte{}
			}
			snap.Secrets[string(k[len(secretPrefix):])] = bytes.Clone(v)
		}
		for _, d := range []store.Domain{store.DomainKeys, store.DomainModels, store.DomainRevocations} {
			snap.Revisions[d] = readU64(m, revKey(d))
		}
		if err := each(tx, bUsers, func(r userRecord) { snap.Users = append(snap.Users, r.domain()) }); err != nil {
			return err
		}
		if err := each(tx, bPATs, func(r patRecord) { snap.PATs = append(snap.PATs, r.domain()) }); err != nil {
			return err
		}
		var set keySetRecord
		if err := get(tx.Bucket(bKeys), kKeySet, &set); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		snap.Keys = set.domain()
		if err := each(tx, bTokens, func(r issuedTokenRecord) { snap.Tokens = append(snap.Tokens, r.domain()) }); err != nil {
			return err
		}
		if err := each(tx, bRevoked, func(r revocationRecord) { snap.Revocations = append(snap.Revocations, r.domain()) }); err != nil {
			return err
		}
		if err := each(tx, bModels, func(r modelRecord) { snap.Models = append(snap.Models, r.domain()) }); err != nil {
			return err
		}
		return each(tx, bSettings, func(r featureSettingRecord) { snap.Settings = append(snap.Settings, r.domain()) })
	})
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("boltstore: export: %w", err)
	}
	return snap, nil
}

// each decodes every record of a bucket, in key order.
func each[R any](tx *bolt.Tx, bucket []byte, fn func(R)) error {
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		var r R
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
		}
		fn(r)
		return nil
	})
}
