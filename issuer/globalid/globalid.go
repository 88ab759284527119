// Package globalid derives the global user id (the gitlab_global_user_id
// claim and the x-gitlab-global-user-id header) from a user id.
//
// GitLab makes the value opaque by hashing the instance id and the user id
// together with an instance secret. Here the value is base64 (standard, with
// padding: GitLab's shape) of HMAC-SHA256 over the instance id and the
// decimal user id, under a 32-byte key that never leaves the issuer: it is
// generated once, stored sealed by the KEK, and read back on every start, so
// the same user always gets the same value, also on other replicas sharing
// the store. Without the key nobody can compute a user's value from public
// data (the instance id is in every token) or tell which user a value names.
package globalid

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// KeySize is the HMAC key length in bytes.
const KeySize = 32

// SecretName is the store name of the sealed key; it is also the associated
// data of the sealed blob, so the blob cannot be swapped in elsewhere.
const SecretName = "global_user_id_key" //nolint:gosec // G101: a record name, not a credential

// Deriver computes global user ids. Safe for concurrent use.
type Deriver struct {
	key        []byte
	instanceID string
}

// New returns a Deriver for instanceID keyed with key (KeySize bytes).
func New(key []byte, instanceID string) (*Deriver, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("globalid: key is %d bytes, want %d", len(key), KeySize)
	}
	if instanceID == "" {
		return nil, errors.New("globalid: instance id is required")
	}
	return &Deriver{key: clone(key), instanceID: instanceID}, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// GlobalUserID returns the global user id of userID.
func (d *Deriver) GlobalUserID(userID uint64) string {
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte(d.instanceID))
	// A separator, so instance "ab"+user 1 and instance "a"+user "b1" can
	// never collide (GitLab concatenates; the key makes it opaque anyway).
	mac.Write([]byte{0})
	mac.Write([]byte(strconv.FormatUint(userID, 10)))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Sealer seals and opens secrets (*kek.KEK).
type Sealer interface {
	Seal(plaintext, aad []byte) ([]byte, error)
	Open(sealed, aad []byte) ([]byte, error)
}

// SecretStore keeps the first sealed secret stored under a name
// (store.Store).
type SecretStore interface {
	InitSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)
}

// LoadKey returns the issuer's HMAC key: the one sealed in s, or a fresh
// random key sealed and stored on first use (if another replica stores one
// first, that one is returned). It fails when the stored key does not open
// under k (a wrong KEK or a corrupt record): never silently a new key, which
// would change every user's id.
func LoadKey(ctx context.Context, s SecretStore, k Sealer) ([]byte, error) {
	fresh := make([]byte, KeySize)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("globalid: %w", err)
	}
	sealed, err := k.Seal(fresh, []byte(SecretName))
	if err != nil {
		return nil, fmt.Errorf("globalid: seal key: %w", err)
	}
	stored, err := s.InitSecret(ctx, SecretName, sealed)
	if err != nil {
		return nil, fmt.Errorf("globalid: store key: %w", err)
	}
	key, err := k.Open(stored, []byte(SecretName))
	if err != nil {
		return nil, fmt.Errorf("globalid: open stored key: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("globalid: stored key is %d bytes, want %d", len(key), KeySize)
	}
	return key, nil
}
