// Package boltstore is the issuer's embedded default store: one bbolt file
// in the data directory. bbolt fsyncs every committed transaction, so a
// write is durable before the method returns, and a crash mid-write leaves
// the previous committed state. bbolt runs one write transaction at a time,
// so every check a write makes inside its transaction holds when it commits.
//
// The file holds the private record types of records.go at the schema
// version of schema.go; Open refuses a file from a newer issuer
// (ErrSchemaTooNew).
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-dev/airlock/issuer/store"
)

// FileName is the database file's name inside the data directory.
const FileName = "issuer.db"

var (
	bMeta     = []byte("meta")
	bUsers    = []byte("users")       // username → userRecord
	bUserIDs  = []byte("user_ids")    // id (big endian) → username
	bPATs     = []byte("pats")        // id → patRecord
	bPATHash  = []byte("pat_hash")    // hash → id
	bKeys     = []byte("keys")        // "set" → keySetRecord
	bTokens   = []byte("tokens")      // jti → issuedTokenRecord
	bRevoked  = []byte("revocations") // jti → revocationRecord
	bModels   = []byte("models")      // name → modelRecord
	bSettings = []byte("settings")    // feature → featureSettingRecord

	kInstanceID = []byte("instance_id")
	kNextUserID = []byte("next_user_id")
	kKeySet     = []byte("set")
)

// Store is a store.Store on bbolt.
type Store struct {
	db      *bolt.DB
	records *groupCommit // RecordToken's writes
	// The records every authenticated call reads (see decodeMemo).
	pats  decodeMemo[patRecord]
	users decodeMemo[userRecord]
}

var _ store.Store = (*Store)(nil)

// ErrNoStore marks OpenExisting's refusal of a directory without a store
// file; the error's text is the os.Stat error's.
var ErrNoStore = errors.New("boltstore: no store in the directory")

// ErrInUse: another process holds the store open (bbolt's file lock),
// typically a running issuer.
var ErrInUse = errors.New("boltstore: the store is held by another process")

// noStoreError is an os.Stat error marked ErrNoStore.
type noStoreError struct{ err error }

func (e noStoreError) Error() string        { return e.err.Error() }
func (e noStoreError) Unwrap() error        { return e.err }
func (e noStoreError) Is(target error) bool { return target == ErrNoStore }

// OpenExisting is Open for a tool working on an installation (migrate-store,
// issue-pat): a directory without a store file is refused with ErrNoStore
// rather than given a new empty store, which would only hide a wrong
// directory, and a store another process holds is refused with ErrInUse
// once Open's wait for the lock runs out.
func OpenExisting(dir string) (*Store, error) {
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		return nil, noStoreError{err}
	}
	s, err := Open(dir)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %w", ErrInUse, err)
	}
	return s, err
}

// Open opens (creating if needed) the database in dir, which is created
// with mode 0700. The file is created 0600. A second process opening the
// same file waits up to 5 s for the lock, then fails. A file from an older
// release is upgraded in place; one from a newer release is refused with
// ErrSchemaTooNew.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: create data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{
		Timeout: 5 * time.Second,
		// The free list is rebuilt from the pages at open instead of being
		// written on every commit: smaller, faster commits, same durability.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", filepath.Join(dir, FileName), err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bUsers, bUserIDs, bPATs, bPATHash, bKeys, bTokens, bRevoked, bModels, bSettings} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return migrate(tx)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", filepath.Join(dir, FileName), err)
	}
	return &Store{db: db, records: newGroupCommit(db)}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// put stores v, a record type of records.go, under k.
func put(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

// get decodes the record under k into v, or returns store.ErrNotFound.
func get(b *bolt.Bucket, k []byte, v any) error {
	data := b.Get(k)
	if data == nil {
		return store.ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
	}
	return nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func revKey(d store.Domain) []byte { return []byte("rev/" + string(d)) }

func readU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// bump increments a domain's revision inside tx and returns the new value.
func bump(tx *bolt.Tx, d store.Domain) (uint64, error) {
	m := tx.Bucket(bMeta)
	n := readU64(m, revKey(d)) + 1
	return n, m.Put(revKey(d), u64(n))
}

// InitInstanceID implements store.Store.
func (s *Store) InitInstanceID(_ context.Context, id string) (string, error) {
	var out string
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if v := m.Get(kInstanceID); v != nil {
			out = string(v)
			return nil
		}
		out = id
		return m.Put(kInstanceID, []byte(id))
	})
	return out, err
}

// secretPrefix starts the meta bucket's keys of InitSecret's values.
const secretPrefix = "secret/"

// InitSecret implements store.Store.
func (s *Store) InitSecret(_ context.Context, name string, sealed []byte) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		k := []byte(secretPrefix + name)
		if v := m.Get(k); v != nil {
			out = bytes.Clone(v) // v is only valid inside the transaction
			return nil
		}
		out = bytes.Clone(sealed)
		return m.Put(k, out)
	})
	return out, err
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(_ context.Context, u store.User, maxUsers int) (store.User, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket(bUsers)
		if users.Get([]byte(u.Username)) != nil {
			return fmt.Errorf("user %q: %w", u.Username, store.ErrAlreadyExists)
		}
		if err := checkLimit(tx, kUserCount, "user", maxUsers); err != nil {
			return err
		}
		if err := addCount(tx, kUserCount, 1); err != nil {
			return err
		}
		m := tx.Bucket(bMeta)
		u.ID = readU64(m, kNextUserID) + 1
		if err := m.Put(kNextUserID, u64(u.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bUserIDs).Put(u64(u.ID), []byte(u.Username)); err != nil {
			return err
		}
		return put(users, []byte(u.Username), userToRecord(u))
	})
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(_ context.Context, username string) (store.User, error) {
	var r userRecord
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bUsers), []byte(username), &r) })
	if err != nil {
		return store.User{}, fmt.Errorf("user %q: %w", username, err)
	}
	return r.domain(), nil
}

// GetUserByID implements store.Store.
func (s *Store) GetUserByID(_ context.Context, id uint64) (store.User, error) {
	var r userRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		name := tx.Bucket(bUserIDs).Get(u64(id))
		if name == nil {
			return store.ErrNotFound
		}
		data := tx.Bucket(bUsers).Get(name)
		if data == nil {
			return store.ErrNotFound
		}
		var err error
		r, err = s.users.decode(name, data)
		return err
	})
	if err != nil {
		return store.User{}, err
	}
	r.Features = slices.Clone(r.Features) // the memo's copy stays unshared
	return r.domain(), nil
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(_ context.Context) ([]store.User, error) {
	var out []store.User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bUsers).ForEach(func(k, v []byte) error {
			var r userRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			out = append(out, r.domain())
			return nil
		})
	})
	return out, err // bbolt iterates keys in byte order: ordered by username
}

// CreatePAT implements store.Store.
func (s *Store) CreatePAT(_ context.Context, p store.PAT) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bUserIDs).Get(u64(p.UserID)) == nil {
			return fmt.Errorf("user id %d: %w", p.UserID, store.ErrNotFound)
		}
		pats, hashes := tx.Bucket(bPATs), tx.Bucket(bPATHash)
		if pats.Get([]byte(p.ID)) != nil || hashes.Get(p.Hash) != nil {
			return fmt.Errorf("personal access token: %w", store.ErrAlreadyExists)
		}
		if err := hashes.Put(p.Hash, []byte(p.ID)); err != nil {
			return err
		}
		return put(pats, []byte(p.ID), patToRecord(p))
	})
}

// GetPATByHash implements store.Store.
func (s *Store) GetPATByHash(_ context.Context, hash []byte) (store.PAT, error) {
	var r patRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bPATHash).Get(hash)
		if id == nil {
			return store.ErrNotFound
		}
		data := tx.Bucket(bPATs).Get(id)
		if data == nil {
			return store.ErrNotFound
		}
		var err error
		r, err = s.pats.decode(id, data)
		return err
	})
	if err != nil {
		return store.PAT{}, err
	}
	r.Hash = slices.Clone(r.Hash) // the memo's copy stays unshared
	return r.domain(), nil
}

// RevokePAT implements store.Store.
func (s *Store) RevokePAT(_ context.Context, id string, at time.Time) (store.PAT, error) {
	var r patRecord
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPATs)
		if err := get(b, []byte(id), &r); err != nil {
			return err
		}
		if !r.RevokeTime.IsZero() {
			return nil
		}
		r.RevokeTime = at
		return put(b, []byte(id), r)
	})
	if err != nil {
		return store.PAT{}, err
	}
	return r.domain(), nil
}

// ListKeys implements store.Store.
func (s *Store) ListKeys(_ context.Context) ([]store.SigningKey, uint64, error) {
	var set keySetRecord
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = readU64(tx.Bucket(bMeta), revKey(store.DomainKeys))
		err := get(tx.Bucket(bKeys), kKeySet, &set)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	return set.domain(), rev, err
}

// ReplaceKeys implements store.Store.
func (s *Store) ReplaceKeys(_ context.Context, keys []store.SigningKey) (uint64, error) {
	var rev uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rev, err = bump(tx, store.DomainKeys); err != nil {
			return err
		}
		return put(tx.Bucket(bKeys), kKeySet, keySetToRecord(keys))
	})
	return rev, err
}

// SwapKeys implements store.Store.
func (s *Store) SwapKeys(_ context.Context, keys []store.SigningKey, ifRevision uint64) (uint64, error) {
	var rev uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		if cur := readU64(tx.Bucket(bMeta), revKey(store.DomainKeys)); cur != ifRevision {
			return fmt.Errorf("keys at revision %d, not %d: %w", cur, ifRevision, store.ErrConflict)
		}
		var err error
		if rev, err = bump(tx, store.DomainKeys); err != nil {
			return err
		}
		return put(tx.Bucket(bKeys), kKeySet, keySetToRecord(keys))
	})
	return rev, err
}

// RecordToken implements store.Store. It is the write on every mint, so
// concurrent calls are group-committed (groupcommit.go: one transaction and
// one fsync for the records of concurrent mints).
func (s *Store) RecordToken(_ context.Context, t store.IssuedToken) error {
	return s.records.do(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTokens)
		if b.Get([]byte(t.JTI)) != nil {
			return fmt.Errorf("token %q: %w", t.JTI, store.ErrAlreadyExists)
		}
		return put(b, []byte(t.JTI), issuedTokenToRecord(t))
	})
}

// ExpectRecord announces a RecordToken call to come (a mint that has begun
// signing), so that a commit of other mints' records under way waits a
// little for it instead of needing a commit of its own. Call the returned
// func exactly once, just before RecordToken, or instead of it if the mint
// fails.
func (s *Store) ExpectRecord() (arrived func()) { return s.records.expect() }

// GetToken implements store.Store.
func (s *Store) GetToken(_ context.Context, jti string) (store.IssuedToken, error) {
	var r issuedTokenRecord
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bTokens), []byte(jti), &r) })
	if err != nil {
		return store.IssuedToken{}, err
	}
	return r.domain(), nil
}

// Revoke implements store.Store.
func (s *Store) Revoke(_ context.Context, r store.Revocation) (store.Revocation, bool, error) {
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		var old revocationRecord
		if err := get(b, []byte(r.JTI), &old); err == nil {
			r = old.domain()
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		seq, err := bump(tx, store.DomainRevocations)
		if err != nil {
			return err
		}
		r.Seq, created = seq, true
		return put(b, []byte(r.JTI), revocationToRecord(r))
	})
	if err != nil {
		return store.Revocation{}, false, err
	}
	return r, created, nil
}

// ListRevocations implements store.Store.
func (s *Store) ListRevocations(_ context.Context) ([]store.Revocation, uint64, error) {
	var out []store.Revocation
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = readU64(tx.Bucket(bMeta), revKey(store.DomainRevocations))
		return tx.Bucket(bRevoked).ForEach(func(k, v []byte) error {
			var r revocationRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			out = append(out, r.domain())
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, rev, err
}

// PruneTokens implements store.Store.
func (s *Store) PruneTokens(_ context.Context, now time.Time) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bTokens, bRevoked} {
			b := tx.Bucket(name)
			var dead [][]byte
			err := b.ForEach(func(k, v []byte) error {
				var rec expiryRecord
				if err := json.Unmarshal(v, &rec); err != nil {
					return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
				}
				if !rec.ExpireTime.After(now) {
					dead = append(dead, bytes.Clone(k))
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			if bytes.Equal(name, bRevoked) {
				n = len(dead)
			}
		}
		if n > 0 {
			// Watchers compare revisions; a shrink is a change too.
			if _, err := bump(tx, store.DomainRevocations); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// checkLimit refuses a create when the maintained count under key has
// reached limit (0: unlimited).
func checkLimit(tx *bolt.Tx, key []byte, kind string, limit int) error {
	if limit <= 0 {
		return nil
	}
	if n := readU64(tx.Bucket(bMeta), key); n >= uint64(limit) {
		return &store.LimitError{Kind: kind, Count: int(n), Limit: limit} //nolint:gosec // G115: a record count, far below MaxInt
	}
	return nil
}

// getModel reads one model record inside tx.
func getModel(tx *bolt.Tx, name string) (modelRecord, error) {
	var r modelRecord
	if err := get(tx.Bucket(bModels), []byte(name), &r); err != nil {
		return modelRecord{}, fmt.Errorf("model %q: %w", name, err)
	}
	return r, nil
}

// checkFallback checks, inside tx, that m's fallback exists and that
// following fallbacks from it never leads back to m. The stored chains are
// acyclic (every write ran this check in its transaction), so the walk ends
// after at most one step per stored model.
func checkFallback(tx *bolt.Tx, m store.Model) error {
	if m.Fallback == "" {
		return nil
	}
	if m.Fallback == m.Name {
		return fmt.Errorf("model %q is its own fallback: %w", m.Name, store.ErrCycle)
	}
	if tx.Bucket(bModels).Get([]byte(m.Fallback)) == nil {
		return fmt.Errorf("fallback model %q: %w", m.Fallback, store.ErrReferenceNotFound)
	}
	seen := map[string]bool{m.Name: true}
	for next := m.Fallback; next != ""; {
		if seen[next] {
			return fmt.Errorf("fallback chain through %q forms a cycle: %w", next, store.ErrCycle)
		}
		seen[next] = true
		r, err := getModel(tx, next)
		if errors.Is(err, store.ErrNotFound) {
			return nil // a dangling link further on is not this write's doing
		}
		if err != nil {
			return err
		}
		next = r.Fallback
	}
	return nil
}

// CreateModel implements store.Store.
func (s *Store) CreateModel(_ context.Context, m store.Model, maxModels int) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bModels)
		if b.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("model %q: %w", m.Name, store.ErrAlreadyExists)
		}
		if err := checkFallback(tx, m); err != nil {
			return err
		}
		if err := checkLimit(tx, kModelCount, "model", maxModels); err != nil {
			return err
		}
		if err := addCount(tx, kModelCount, 1); err != nil {
			return err
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return put(b, []byte(m.Name), modelToRecord(m))
	})
}

// UpdateModel implements store.Store. update runs exactly once, inside the
// write transaction.
func (s *Store) UpdateModel(_ context.Context, name string, update func(old store.Model) (store.Model, error)) (store.Model, error) {
	var m store.Model
	err := s.db.Update(func(tx *bolt.Tx) error {
		old, err := getModel(tx, name)
		if err != nil {
			return err
		}
		if m, err = update(old.domain()); err != nil {
			return err
		}
		if m.Name != name {
			return fmt.Errorf("boltstore: update of model %q renamed it to %q", name, m.Name)
		}
		if err := checkFallback(tx, m); err != nil {
			return err
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return put(tx.Bucket(bModels), []byte(name), modelToRecord(m))
	})
	if err != nil {
		return store.Model{}, err
	}
	return m, nil
}

// GetModel implements store.Store.
func (s *Store) GetModel(_ context.Context, name string) (store.Model, error) {
	var r modelRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = getModel(tx, name)
		return err
	})
	if err != nil {
		return store.Model{}, err
	}
	return r.domain(), nil
}

// DeleteModel implements store.Store.
func (s *Store) DeleteModel(_ context.Context, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bModels)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("model %q: %w", name, store.ErrNotFound)
		}
		err := tx.Bucket(bSettings).ForEach(func(k, v []byte) error {
			var fs featureSettingRecord
			if err := json.Unmarshal(v, &fs); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			if fs.Model == name {
				return fmt.Errorf("model %q is used by feature %q: %w", name, fs.Feature, store.ErrInUse)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			var m modelRecord
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			if m.Fallback == name && m.Name != name {
				return fmt.Errorf("model %q is the fallback of model %q: %w", name, m.Name, store.ErrInUse)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := addCount(tx, kModelCount, -1); err != nil {
			return err
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return b.Delete([]byte(name))
	})
}

// SetFeatureSetting implements store.Store.
func (s *Store) SetFeatureSetting(_ context.Context, fs store.FeatureSetting) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if fs.Model != "" && tx.Bucket(bModels).Get([]byte(fs.Model)) == nil {
			return fmt.Errorf("model %q: %w", fs.Model, store.ErrReferenceNotFound)
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return put(tx.Bucket(bSettings), []byte(fs.Feature), featureSettingToRecord(fs))
	})
}

// ModelConfig implements store.Store.
func (s *Store) ModelConfig(_ context.Context) (store.ModelConfig, error) {
	var c store.ModelConfig
	err := s.db.View(func(tx *bolt.Tx) error {
		c.Revision = readU64(tx.Bucket(bMeta), revKey(store.DomainModels))
		if err := tx.Bucket(bModels).ForEach(func(k, v []byte) error {
			var m modelRecord
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			c.Models = append(c.Models, m.domain())
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bSettings).ForEach(func(k, v []byte) error {
			var fs featureSettingRecord
			if err := json.Unmarshal(v, &fs); err != nil {
				return fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
			}
			c.Settings = append(c.Settings, fs.domain())
			return nil
		})
	})
	return c, err
}

// Revision implements store.Store.
func (s *Store) Revision(_ context.Context, d store.Domain) (uint64, error) {
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = readU64(tx.Bucket(bMeta), revKey(d))
		return nil
	})
	return rev, err
}
