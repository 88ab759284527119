// Package pat is the issuer's personal access token as a credential: how
// one is generated and spelled, the only form the store keeps (its
// SHA-256), how a presented one is parsed and checked, and issuing one for a
// user. The RPC layer (usersvc, authn) and the bootstrap all go through it,
// so there is one definition of what a PAT is.
//
// A secret is Prefix followed by 43 base64url characters (256 random bits):
// the prefix lets secret scanners recognise a leaked one, and the fixed
// shape lets a caller reject a malformed one without a store lookup. A
// secret is never logged, stored or returned except once, to whoever
// issued it.
package pat

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

// Prefix starts every secret.
const Prefix = "alpat_"

// IDPrefix starts every token id (the public handle, e.g. for revocation).
const IDPrefix = "pat-"

const (
	secretBytes = 32 // 256 bits
	idBytes     = 9
)

var secretLen = len(Prefix) + base64.RawURLEncoding.EncodedLen(secretBytes)

// ErrMalformed: the string is not shaped like a secret. It says nothing
// about whether a well-formed one exists.
var ErrMalformed = errors.New("malformed personal access token")

// Generate returns a fresh id and secret from crypto/rand.
func Generate() (id, secret string, err error) { return GenerateFrom(rand.Reader) }

// GenerateFrom is Generate reading its randomness from r; an error from r
// is returned.
func GenerateFrom(r io.Reader) (id, secret string, err error) {
	b := make([]byte, secretBytes+idBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", "", fmt.Errorf("generate personal access token: %w", err)
	}
	return IDPrefix + base64.RawURLEncoding.EncodeToString(b[secretBytes:]),
		Prefix + base64.RawURLEncoding.EncodeToString(b[:secretBytes]), nil
}

// Parse returns s if it is shaped like a secret, else ErrMalformed.
// Surrounding white space is not trimmed: the caller decides what framing
// it accepts.
func Parse(s string) (string, error) {
	if len(s) != secretLen || !strings.HasPrefix(s, Prefix) {
		return "", ErrMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s[len(Prefix):])
	if err != nil || len(raw) != secretBytes {
		return "", ErrMalformed
	}
	return s, nil
}

// Hash returns the stored form of a secret.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Verify reports whether secret hashes to hash, in time independent of
// where they differ.
func Verify(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(Hash(secret), hash) == 1
}

// Creator is the part of the store Issue writes to.
type Creator interface {
	CreatePAT(ctx context.Context, p store.PAT) error
}

// Issue creates a token for u, valid from now until exp, stores its hash
// through st, and returns the stored token and its secret. Errors are the
// store's (store.ErrNotFound if u does not exist) or a failure to generate.
func Issue(ctx context.Context, st Creator, u store.User, now, exp time.Time) (store.PAT, string, error) {
	id, secret, err := Generate()
	if err != nil {
		return store.PAT{}, "", err
	}
	p := store.PAT{ID: id, Hash: Hash(secret), UserID: u.ID, Username: u.Username, CreateTime: now, ExpireTime: exp}
	if err := st.CreatePAT(ctx, p); err != nil {
		return store.PAT{}, "", fmt.Errorf("create personal access token: %w", err)
	}
	return p, secret, nil
}
