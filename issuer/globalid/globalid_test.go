package globalid_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/airlock-dev/airlock/issuer/globalid"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

const instance = "5b3a1c1e-8d7f-4a39-9c52-3f8e0c1d2b7a"

func deriver(t *testing.T, key byte) *globalid.Deriver {
	t.Helper()
	d, err := globalid.New(bytes.Repeat([]byte{key}, globalid.KeySize), instance)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGlobalUserIDIsStableAndShapedLikeGitLabs(t *testing.T) {
	d := deriver(t, 1)
	a, b := d.GlobalUserID(7), d.GlobalUserID(7)
	if a != b {
		t.Fatalf("same user, two values: %q, %q", a, b)
	}
	raw, err := base64.StdEncoding.DecodeString(a)
	if err != nil || len(raw) != sha256.Size {
		t.Fatalf("%q is not base64 of %d bytes (err %v)", a, sha256.Size, err)
	}
	if d.GlobalUserID(8) == a {
		t.Fatal("users 7 and 8 share a value")
	}
}

func TestGlobalUserIDCannotBeRecomputedFromPublicData(t *testing.T) {
	got := deriver(t, 1).GlobalUserID(7)
	for _, in := range []string{instance + "7", instance + "\x007", "7" + instance} {
		sum := sha256.Sum256([]byte(in))
		for _, guess := range []string{hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:]), base64.RawURLEncoding.EncodeToString(sum[:])} {
			if guess == got {
				t.Fatalf("value equals an unkeyed hash of %q", in)
			}
		}
	}
	if other := deriver(t, 2).GlobalUserID(7); other == got {
		t.Fatal("two issuers with different secrets give the same value")
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	if _, err := globalid.New(make([]byte, 16), instance); err == nil {
		t.Error("a 16-byte key was accepted")
	}
	if _, err := globalid.New(make([]byte, globalid.KeySize), ""); err == nil {
		t.Error("an empty instance id was accepted")
	}
}

func newKEK(t *testing.T, b byte) *kek.KEK {
	t.Helper()
	k, err := kek.New(bytes.Repeat([]byte{b}, kek.Size))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadKeyIsStableAcrossRestartsAndSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	k := newKEK(t, 9)
	load := func(k *kek.KEK) ([]byte, error) {
		st, err := boltstore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return globalid.LoadKey(ctx, st, k)
	}
	first, err := load(k)
	if err != nil {
		t.Fatal(err)
	}
	second, err := load(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Fatal("a restart changed the key")
	}
	// The stored form is sealed: the key's bytes are not in it.
	st, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.InitSecret(ctx, globalid.SecretName, []byte("ignored"))
	st.Close()
	if err != nil || bytes.Contains(stored, first) {
		t.Fatalf("stored secret holds the key in clear (err %v)", err)
	}
	if _, err := load(newKEK(t, 10)); !errors.Is(err, kek.ErrOpen) {
		t.Fatalf("LoadKey under another KEK: err = %v, want kek.ErrOpen (never a new key)", err)
	}
}

// fakeStore fails or keeps one secret.
type fakeStore struct {
	err    error
	stored []byte
}

func (f *fakeStore) InitSecret(_ context.Context, _ string, sealed []byte) ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.stored == nil {
		f.stored = sealed
	}
	return f.stored, nil
}

func TestLoadKeyFailsClosed(t *testing.T) {
	if _, err := globalid.LoadKey(context.Background(), &fakeStore{err: errors.New("disk")}, newKEK(t, 1)); err == nil {
		t.Error("a store failure was not returned")
	}
	// A record sealed for another purpose does not open as this key.
	k := newKEK(t, 1)
	other, err := k.Seal(make([]byte, globalid.KeySize), []byte("model/x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := globalid.LoadKey(context.Background(), &fakeStore{stored: other}, k); err == nil {
		t.Error("a blob sealed for another name was accepted as the key")
	}
}
