package auth

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"
)

const cacheShards = 16

// tokenCache remembers tokens that passed every token-only check (JWS,
// signature, claims), so a repeated token costs a hash and a map lookup
// instead of a signature check. Keys are SHA-256 digests: the cache never
// holds a bearer token. It is bounded; when a shard is full, expired
// entries go first, then an arbitrary eighth of the shard (Go's map order
// is randomised, so the victims are effectively random).
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*cacheEntry
}

// cacheEntry is immutable once stored.
type cacheEntry struct {
	id         *Identity // GlobalUserID as first seen; copied if another is sent
	kid        string    // key that verified the token, for eviction on removal
	instanceID string    // gitlab_instance_id claim
	hasInstID  bool
	// globalUserID is the gitlab_global_user_id claim, when hasGU.
	globalUserID string
	hasGU        bool
	expires      int64 // unix ns: the token's exp
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*cacheEntry)
	}
	return c
}

// digest hashes tok without copying it: sha256.Sum256 only reads its input.
func digest(tok string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(tok), len(tok))) //nolint:gosec // G103: read-only view, see above
}

func (c *tokenCache) shard(d *[sha256.Size]byte) *cacheShard { return &c.shards[d[0]%cacheShards] }

// get returns the live entry for d; an expired entry counts as absent.
func (c *tokenCache) get(d *[sha256.Size]byte, now time.Time) *cacheEntry {
	s := c.shard(d)
	s.mu.RLock()
	e := s.m[*d]
	s.mu.RUnlock()
	if e == nil || now.UnixNano() >= e.expires {
		return nil
	}
	return e
}

func (c *tokenCache) put(d *[sha256.Size]byte, e *cacheEntry, now time.Time) {
	s := c.shard(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		n := now.UnixNano()
		for k, v := range s.m {
			if n >= v.expires {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < c.perShard-c.perShard/8 {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[*d] = e
}

// evict removes every entry for which drop returns true. It scans the whole
// cache: revocations and key removals are rare, lookups are not, so the
// cache keeps no secondary index to make this faster.
func (c *tokenCache) evict(drop func(*cacheEntry) bool) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, v := range s.m {
			if drop(v) {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
