// Package boltstore is the issuer's embedded default store: one bbolt file
// in the data directory. bbolt fsyncs every committed transaction, so a
// write is durable before the method returns, and a crash mid-write leaves
// the previous committed state.
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
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-dev/airlock/issuer/store"
)

// FileName is the database file's name inside the data directory.
const FileName = "issuer.db"

var (
	bMeta     = []byte("meta")
	bUsers    = []byte("users")    // username → User
	bUserIDs  = []byte("user_ids") // id (big endian) → username
	bPATs     = []byte("pats")     // id → PAT
	bPATHash  = []byte("pat_hash") // hash → id
	bKeys     = []byte("keys")     // "set" → []SigningKey
	bTokens   = []byte("tokens")   // jti → IssuedToken
	bRevoked  = []byte("revocations")
	bModels   = []byte("models")   // name → Model
	bSettings = []byte("settings") // feature → FeatureSetting

	kInstanceID = []byte("instance_id")
	kNextUserID = []byte("next_user_id")
	kKeySet     = []byte("set")
)

// Store is a store.Store on bbolt.
type Store struct {
	db *bolt.DB
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database in dir, which is created
// with mode 0700. The file is created 0600. A second process opening the
// same file waits up to 5 s for the lock, then fails.
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
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init buckets: %w", err)
	}
	// Minting records every token; concurrent mints share one commit (and
	// one fsync) through Batch, waiting at most this long for company.
	db.MaxBatchDelay = time.Millisecond
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func put(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

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

// InitSecret implements store.Store.
func (s *Store) InitSecret(_ context.Context, name string, sealed []byte) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		k := []byte("secret/" + name)
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
func (s *Store) CreateUser(_ context.Context, u store.User) (store.User, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		users := tx.Bucket(bUsers)
		if users.Get([]byte(u.Username)) != nil {
			return fmt.Errorf("user %q: %w", u.Username, store.ErrAlreadyExists)
		}
		m := tx.Bucket(bMeta)
		u.ID = readU64(m, kNextUserID) + 1
		if err := m.Put(kNextUserID, u64(u.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bUserIDs).Put(u64(u.ID), []byte(u.Username)); err != nil {
			return err
		}
		return put(users, []byte(u.Username), u)
	})
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(_ context.Context, username string) (store.User, error) {
	var u store.User
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bUsers), []byte(username), &u) })
	if err != nil {
		return store.User{}, fmt.Errorf("user %q: %w", username, err)
	}
	return u, nil
}

// GetUserByID implements store.Store.
func (s *Store) GetUserByID(_ context.Context, id uint64) (store.User, error) {
	var u store.User
	err := s.db.View(func(tx *bolt.Tx) error {
		name := tx.Bucket(bUserIDs).Get(u64(id))
		if name == nil {
			return store.ErrNotFound
		}
		return get(tx.Bucket(bUsers), name, &u)
	})
	return u, err
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(_ context.Context) ([]store.User, error) {
	var out []store.User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bUsers).ForEach(func(k, v []byte) error {
			var u store.User
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
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
		return put(pats, []byte(p.ID), p)
	})
}

// GetPATByHash implements store.Store.
func (s *Store) GetPATByHash(_ context.Context, hash []byte) (store.PAT, error) {
	var p store.PAT
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bPATHash).Get(hash)
		if id == nil {
			return store.ErrNotFound
		}
		return get(tx.Bucket(bPATs), id, &p)
	})
	return p, err
}

// RevokePAT implements store.Store.
func (s *Store) RevokePAT(_ context.Context, id string, at time.Time) (store.PAT, error) {
	var p store.PAT
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bPATs)
		if err := get(b, []byte(id), &p); err != nil {
			return err
		}
		if !p.RevokeTime.IsZero() {
			return nil
		}
		p.RevokeTime = at
		return put(b, []byte(id), p)
	})
	return p, err
}

// ListKeys implements store.Store.
func (s *Store) ListKeys(_ context.Context) ([]store.SigningKey, uint64, error) {
	var keys []store.SigningKey
	var rev uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		rev = readU64(tx.Bucket(bMeta), revKey(store.DomainKeys))
		err := get(tx.Bucket(bKeys), kKeySet, &keys)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	return keys, rev, err
}

// ReplaceKeys implements store.Store.
func (s *Store) ReplaceKeys(_ context.Context, keys []store.SigningKey) (uint64, error) {
	var rev uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if rev, err = bump(tx, store.DomainKeys); err != nil {
			return err
		}
		return put(tx.Bucket(bKeys), kKeySet, keys)
	})
	return rev, err
}

// RecordToken implements store.Store. It is the write on every mint, so
// concurrent calls are group-committed (bolt's Batch: one transaction and one
// fsync for all of them; each caller returns only after that commit).
func (s *Store) RecordToken(_ context.Context, t store.IssuedToken) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bTokens)
		if b.Get([]byte(t.JTI)) != nil {
			return fmt.Errorf("token %q: %w", t.JTI, store.ErrAlreadyExists)
		}
		return put(b, []byte(t.JTI), t)
	})
}

// GetToken implements store.Store.
func (s *Store) GetToken(_ context.Context, jti string) (store.IssuedToken, error) {
	var t store.IssuedToken
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bTokens), []byte(jti), &t) })
	return t, err
}

// Revoke implements store.Store.
func (s *Store) Revoke(_ context.Context, r store.Revocation) (store.Revocation, bool, error) {
	created := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bRevoked)
		var old store.Revocation
		if err := get(b, []byte(r.JTI), &old); err == nil {
			r = old
			return nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		seq, err := bump(tx, store.DomainRevocations)
		if err != nil {
			return err
		}
		r.Seq, created = seq, true
		return put(b, []byte(r.JTI), r)
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
		return tx.Bucket(bRevoked).ForEach(func(_, v []byte) error {
			var r store.Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
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
				var rec struct{ ExpireTime time.Time }
				if err := json.Unmarshal(v, &rec); err != nil {
					return err
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

func checkFallback(tx *bolt.Tx, m store.Model) error {
	if m.Fallback != "" && tx.Bucket(bModels).Get([]byte(m.Fallback)) == nil {
		return fmt.Errorf("fallback model %q: %w", m.Fallback, store.ErrReferenceNotFound)
	}
	return nil
}

// CreateModel implements store.Store.
func (s *Store) CreateModel(_ context.Context, m store.Model) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bModels)
		if b.Get([]byte(m.Name)) != nil {
			return fmt.Errorf("model %q: %w", m.Name, store.ErrAlreadyExists)
		}
		if err := checkFallback(tx, m); err != nil {
			return err
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return put(b, []byte(m.Name), m)
	})
}

// UpdateModel implements store.Store.
func (s *Store) UpdateModel(_ context.Context, m store.Model) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bModels)
		if b.Get([]byte(m.Name)) == nil {
			return fmt.Errorf("model %q: %w", m.Name, store.ErrNotFound)
		}
		if err := checkFallback(tx, m); err != nil {
			return err
		}
		if _, err := bump(tx, store.DomainModels); err != nil {
			return err
		}
		return put(b, []byte(m.Name), m)
	})
}

// GetModel implements store.Store.
func (s *Store) GetModel(_ context.Context, name string) (store.Model, error) {
	var m store.Model
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bModels), []byte(name), &m) })
	if err != nil {
		return store.Model{}, fmt.Errorf("model %q: %w", name, err)
	}
	return m, nil
}

// DeleteModel implements store.Store.
func (s *Store) DeleteModel(_ context.Context, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bModels)
		if b.Get([]byte(name)) == nil {
			return fmt.Errorf("model %q: %w", name, store.ErrNotFound)
		}
		err := tx.Bucket(bSettings).ForEach(func(_, v []byte) error {
			var fs store.FeatureSetting
			if err := json.Unmarshal(v, &fs); err != nil {
				return err
			}
			if fs.Model == name {
				return fmt.Errorf("model %q is used by feature %q: %w", name, fs.Feature, store.ErrInUse)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = b.ForEach(func(_, v []byte) error {
			var m store.Model
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			if m.Fallback == name && m.Name != name {
				return fmt.Errorf("model %q is the fallback of model %q: %w", name, m.Name, store.ErrInUse)
			}
			return nil
		})
		if err != nil {
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
		return put(tx.Bucket(bSettings), []byte(fs.Feature), fs)
	})
}

// ModelConfig implements store.Store.
func (s *Store) ModelConfig(_ context.Context) (store.ModelConfig, error) {
	var c store.ModelConfig
	err := s.db.View(func(tx *bolt.Tx) error {
		c.Revision = readU64(tx.Bucket(bMeta), revKey(store.DomainModels))
		if err := tx.Bucket(bModels).ForEach(func(_, v []byte) error {
			var m store.Model
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			c.Models = append(c.Models, m)
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bSettings).ForEach(func(_, v []byte) error {
			var fs store.FeatureSetting
			if err := json.Unmarshal(v, &fs); err != nil {
				return err
			}
			c.Settings = append(c.Settings, fs)
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
