package boltstore

import (
	"encoding/json"
	"fmt"
	"sync"
)

// memoEntries bounds a decodeMemo: far more than the PATs and users that
// authenticate within any short while, small enough (a few hundred KB) to
// hold. When full, the memo starts over.
const memoEntries = 1024

// decodeMemo remembers what decoding a stored record returned, keyed by the
// record's exact bytes. Every authenticated call reads the caller's PAT and
// user records; decoding their JSON (three timestamps, a base64 hash) cost
// more than the rest of the lookup. The store is still read on every call:
// only the decoding of bytes already seen is skipped, so a changed record (a
// revoked PAT, a user's new features) has different bytes and is decoded
// afresh, and a deleted one is not found. Callers must treat the values
// returned as read-only or copy what they hand out.
type decodeMemo[T any] struct {
	mu sync.RWMutex
	m  map[string]T
}

// decode returns the record encoded in data (bytes read from a bucket under
// key k, valid only in the read's transaction).
func (c *decodeMemo[T]) decode(k, data []byte) (T, error) {
	c.mu.RLock()
	v, ok := c.m[string(data)] // no copy: the compiler looks the bytes up in place
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("boltstore: corrupt record %q: %w", k, err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= memoEntries {
		c.m = make(map[string]T)
	}
	c.m[string(data)] = v
	c.mu.Unlock()
	return v, nil
}
