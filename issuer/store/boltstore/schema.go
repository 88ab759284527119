package boltstore

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the on-disk format this code reads and writes, kept in
// the meta bucket under kSchemaVersion:
//
//	0  the first release: no version stored; records are the untagged JSON
//	   of the domain structs.
//	1  the same record bytes (see records.go), plus the stored version and
//	   the model and user counts the size limits read.
const schemaVersion = 1

// ErrSchemaTooNew: the database was written by a newer issuer whose format
// this one cannot read; Open refuses it rather than misread or damage it.
var ErrSchemaTooNew = errors.New("database schema is newer than this issuer supports")

var (
	kSchemaVersion = []byte("schema_version")
	kUserCount     = []byte("count/users")
	kModelCount    = []byte("count/models")
)

// migrate brings the database in tx to schemaVersion, or refuses a newer
// one. The record counts are recomputed from the buckets on every open, so
// they are right even after an older issuer (which does not keep them) has
// written to the file.
func migrate(tx *bolt.Tx) error {
	m := tx.Bucket(bMeta)
	v := readU64(m, kSchemaVersion)
	if v > schemaVersion {
		return fmt.Errorf("%w: the file has schema %d, this issuer reads schema %d at most: run the newer issuer or restore a backup", ErrSchemaTooNew, v, schemaVersion)
	}
	// 0 → 1: the records are already in the schema 1 format.
	for _, c := range []struct{ bucket, key []byte }{{bUsers, kUserCount}, {bModels, kModelCount}} {
		if err := m.Put(c.key, u64(keyCount(tx.Bucket(c.bucket)))); err != nil {
			return err
		}
	}
	if v == schemaVersion {
		return nil
	}
	return m.Put(kSchemaVersion, u64(schemaVersion))
}

// keyCount counts a bucket's keys without decoding a value.
func keyCount(b *bolt.Bucket) uint64 {
	var n uint64
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// addCount adds delta to a maintained count inside tx.
func addCount(tx *bolt.Tx, key []byte, delta int) error {
	m := tx.Bucket(bMeta)
	return m.Put(key, u64(uint64(int64(readU64(m, key))+int64(delta)))) //nolint:gosec // G115: record counts, far below MaxInt64
}
