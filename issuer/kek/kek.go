// Package kek holds the issuer's key-encryption key and seals secrets with
// it (AES-256-GCM): signing keys and model API keys never touch the store in
// clear. The associated data binds each ciphertext to its purpose and name,
// so a sealed blob cannot be swapped into another record.
package kek

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Size is the KEK length in bytes (AES-256).
const Size = 32

// version prefixes every sealed blob so the format can change later.
const version byte = 1

// ErrMissing is returned by Load when no KEK is configured.
var ErrMissing = errors.New("no key-encryption key: set --kek-file or AIRLOCK_ISSUER_KEK (base64 of 32 random bytes), or use --dev")

// ErrOpen is returned by Open for any ciphertext that does not authenticate:
// a wrong KEK, tampering, or a blob sealed for another name.
var ErrOpen = errors.New("kek: cannot decrypt: wrong key-encryption key or corrupt data")

// KEK seals and opens secrets. Safe for concurrent use.
type KEK struct {
	aead cipher.AEAD
}

// New returns a KEK from 32 raw bytes.
func New(key []byte) (*KEK, error) {
	if len(key) != Size {
		return nil, fmt.Errorf("kek: key is %d bytes, want %d", len(key), Size)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &KEK{aead: aead}, nil
}

// Parse decodes the textual form: standard or URL base64 of 32 bytes,
// surrounding white space ignored.
func Parse(text string) (*KEK, error) {
	s := strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != Size {
				return nil, fmt.Errorf("kek: decodes to %d bytes, want %d", len(b), Size)
			}
			return New(b)
		}
	}
	return nil, errors.New("kek: not valid base64")
}

// Load returns the KEK from file (if non-empty) or else from envValue (the
// AIRLOCK_ISSUER_KEK value, if non-empty). If neither is set and devDir is
// non-empty, it loads devDir/kek, generating it (mode 0600) on first use.
// Otherwise it returns ErrMissing. A key file readable by group or others is
// refused: the KEK protects every private key.
func Load(file, envValue, devDir string) (*KEK, error) {
	switch {
	case file != "":
		return loadFile(file)
	case envValue != "":
		return Parse(envValue)
	case devDir != "":
		path := filepath.Join(devDir, "kek")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := generate(path); err != nil {
				return nil, err
			}
		}
		return loadFile(path)
	}
	return nil, ErrMissing
}

func loadFile(path string) (*KEK, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("kek file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("kek file %s: mode %v is readable by others; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kek file: %w", err)
	}
	k, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("kek file %s: %w", path, err)
	}
	return k, nil
}

func generate(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	b := make([]byte, Size)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("kek: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(b) + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("kek: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("kek: %w", err)
	}
	return f.Close()
}

// Seal encrypts plaintext bound to aad (purpose and record name).
func (k *KEK) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte{version}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts a blob from Seal with the same aad, or returns ErrOpen.
func (k *KEK) Open(sealed, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n+k.aead.Overhead() || sealed[0] != version {
		return nil, ErrOpen
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
