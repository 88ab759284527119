// Package keypolicy is the one statement of which token signing keys
// Airlock accepts, shared by the issuer (which generates and signs) and the
// gateway (which admits keys into its key set and verifies): RS256 with an
// RSA key of at least 2048 bits, ES256 with an ECDSA P-256 key, EdDSA with an
// Ed25519 key. Each algorithm is bound to exactly one key type, which rules
// out algorithm confusion ("none", HMAC keyed with a public key's bytes, an
// RSA key used for ES256). It depends only on the standard library.
package keypolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
)

// The JWS algorithms (RFC 7518 / RFC 8037 names) Airlock signs and accepts.
const (
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// MinRSABits is the smallest RSA modulus accepted; it is also the size the
// issuer generates.
const MinRSABits = 2048

// Algs returns every accepted algorithm, in order of preference (RS256, the
// default, first). The slice is new on every call.
func Algs() []string { return []string{RS256, ES256, EdDSA} }

// AlgList is Algs for messages and help texts: "RS256, ES256 or EdDSA".
func AlgList() string {
	a := Algs()
	return strings.Join(a[:len(a)-1], ", ") + " or " + a[len(a)-1]
}

// Allowed reports whether alg is an accepted algorithm (case-sensitive, as
// JWS alg values are).
func Allowed(alg string) bool {
	switch alg {
	case RS256, ES256, EdDSA:
		return true
	}
	return false
}

// AlgFor returns the one algorithm pub may verify, or false when pub is not
// an accepted key: an RSA key below MinRSABits, an ECDSA key on another
// curve, an Ed25519 key of the wrong length, or any other type.
func AlgFor(pub crypto.PublicKey) (string, bool) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		return RS256, p.N != nil && p.N.BitLen() >= MinRSABits
	case *ecdsa.PublicKey:
		return ES256, p.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return EdDSA, len(p) == ed25519.PublicKeySize
	}
	return "", false
}

// Supported reports whether pub is an accepted public key of any algorithm.
func Supported(pub crypto.PublicKey) bool {
	_, ok := AlgFor(pub)
	return ok
}

// Matches reports whether pub may verify (or, as a signer's public half,
// produce) signatures with alg: the key is accepted and alg is the one its
// type is bound to.
func Matches(alg string, pub crypto.PublicKey) bool {
	a, ok := AlgFor(pub)
	return ok && a == alg
}

// Generate returns a new private key for alg: RSA MinRSABits, ECDSA P-256 or
// Ed25519. It returns an error naming the accepted algorithms for any other
// alg, and the generator's error if it fails.
func Generate(alg string) (crypto.Signer, error) {
	switch alg {
	case RS256:
		return rsa.GenerateKey(rand.Reader, MinRSABits)
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, Unsupported(alg)
}

// Unsupported is the error for an algorithm outside the policy:
// `unsupported algorithm "HS256": want RS256, ES256 or EdDSA`.
func Unsupported(alg string) error {
	return fmt.Errorf("unsupported algorithm %q: want %s", alg, AlgList())
}
