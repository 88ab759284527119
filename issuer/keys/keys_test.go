package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func testKEK(t *testing.T) *kek.KEK {
	k, err := kek.New(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newManager(t *testing.T, dir string, alg string, c *clock) (*keys.Manager, *boltstore.Store) {
	t.Helper()
	s, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, err := keys.New(context.Background(), keys.Config{
		Store: s, KEK: testKEK(t), Alg: alg, RotationPeriod: 24 * time.Hour,
		MaxTokenTTL: time.Hour, Leeway: time.Minute, Now: c.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

func states(ks *keys.KeySet) map[string]store.KeyState {
	out := map[string]store.KeyState{}
	for _, k := range ks.Keys {
		out[k.KID] = k.State
	}
	return out
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	msg, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	return msg.Signatures()[0].ProtectedHeaders().KeyID()
}

// verify checks tok against the published JWKS only, as a verifier would.
func verify(t *testing.T, ks *keys.KeySet, tok string) error {
	t.Helper()
	set, err := jwk.Parse(ks.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	_, err = jws.Verify([]byte(tok), jws.WithKeySet(set, jws.WithRequireKid(true)))
	return err
}

func TestRotationPhases(t *testing.T) {
	c := &clock{t0}
	m, _ := newManager(t, t.TempDir(), keys.ES256, c)
	ctx := context.Background()

	ks := m.KeySet()
	if len(ks.Keys) != 2 || ks.Keys[0].State != store.KeyActive || ks.Keys[1].State != store.KeyPrepared {
		t.Fatalf("first start: %+v, want active + prepared", ks.Keys)
	}
	k1, k2 := ks.Keys[0].KID, ks.Keys[1].KID
	if got := ks.Keys[1].ActivateTime.Sub(c.t); got < time.Hour {
		t.Fatalf("prepared key activates in %v, want at least the max token TTL", got)
	}
	tok1, err := m.Sign([]byte(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, tok1) != k1 {
		t.Fatal("token not signed by the active key")
	}

	// Before the scheduled time nothing changes.
	rev := ks.Revision
	c.t = t0.Add(23 * time.Hour)
	if err := m.Tick(ctx, c.t); err != nil {
		t.Fatal(err)
	}
	if m.KeySet().Revision != rev {
		t.Fatal("key set changed before the prepared key's activation time")
	}

	// Activation: the prepared key signs, the old one is retired but published.
	c.t = t0.Add(24 * time.Hour)
	if err := m.Tick(ctx, c.t); err != nil {
		t.Fatal(err)
	}
	ks = m.KeySet()
	st := states(ks)
	if st[k1] != store.KeyRetired || st[k2] != store.KeyActive || len(st) != 3 || ks.Revision <= rev {
		t.Fatalf("after activation: %v (revision %d)", st, ks.Revision)
	}
	tok2, err := m.Sign([]byte(`{"n":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if kidOf(t, tok2) != k2 {
		t.Fatal("new token not signed by the newly active key")
	}
	if err := verify(t, ks, tok1); err != nil {
		t.Fatalf("token of the retired key no longer verifies: %v", err)
	}

	// The retired key stays until its last token has expired (+ leeway).
	c.t = t0.Add(24*time.Hour + time.Hour)
	_ = m.Tick(ctx, c.t)
	if _, ok := states(m.KeySet())[k1]; !ok {
		t.Fatal("retired key pruned before retire + max TTL + leeway")
	}
	c.t = t0.Add(24*time.Hour + time.Hour + time.Minute)
	_ = m.Tick(ctx, c.t)
	ks = m.KeySet()
	if _, ok := states(ks)[k1]; ok || len(ks.Keys) != 2 {
		t.Fatalf("retired key not pruned after its tokens expired: %v", states(ks))
	}
	if err := verify(t, ks, tok1); err == nil {
		t.Fatal("token of a pruned key still verifies")
	}
}

func TestForcedRotation(t *testing.T) {
	c := &clock{t0}
	m, _ := newManager(t, t.TempDir(), keys.EdDSA, c)
	before := m.KeySet()
	prepared := before.Keys[1].KID
	after, err := m.Rotate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := states(after)
	if st[prepared] != store.KeyActive || st[before.Keys[0].KID] != store.KeyRetired || len(st) != 3 {
		t.Fatalf("after Rotate: %v", st)
	}
	if after.Keys[1].State != store.KeyPrepared || after.Keys[1].ActivateTime.Sub(c.t) < time.Hour {
		t.Fatalf("no new prepared key published ahead: %+v", after.Keys[1])
	}
}

func TestRestartKeepsKeysAndRevision(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	m, s := newManager(t, dir, keys.RS256, c)
	tok, err := m.Sign([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	before := m.KeySet()
	s.Close()

	m2, _ := newManager(t, dir, keys.RS256, c)
	after := m2.KeySet()
	if after.Revision != before.Revision || !bytes.Equal(after.JWKS, before.JWKS) {
		t.Fatalf("restart changed the key set: revision %d → %d", before.Revision, after.Revision)
	}
	if err := verify(t, after, tok); err != nil {
		t.Fatalf("token minted before restart: %v", err)
	}
}

func TestWrongKEKFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{t0}
	_, s := newManager(t, dir, keys.ES256, c)
	s.Close()
	s2, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	other, _ := kek.New(bytes.Repeat([]byte{1}, 32))
	_, err = keys.New(context.Background(), keys.Config{Store: s2, KEK: other, MaxTokenTTL: time.Hour, Now: c.now})
	if err == nil {
		t.Fatal("keys sealed under another KEK were accepted")
	}
}

func TestConfigValidation(t *testing.T) {
	s, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, cfg := range map[string]keys.Config{
		"unknown algorithm":             {Store: s, KEK: testKEK(t), Alg: "HS256", MaxTokenTTL: time.Hour},
		"rotation shorter than max ttl": {Store: s, KEK: testKEK(t), RotationPeriod: time.Minute, MaxTokenTTL: time.Hour},
		"no max ttl":                    {Store: s, KEK: testKEK(t)},
		"no kek":                        {Store: s, MaxTokenTTL: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := keys.New(context.Background(), cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestJWKSShape(t *testing.T) {
	for _, tc := range []struct {
		alg    string
		fields []string
	}{
		{keys.RS256, []string{"kty", "kid", "e", "n", "use", "alg"}},
		{keys.ES256, []string{"kty", "kid", "crv", "x", "y", "use", "alg"}},
		{keys.EdDSA, []string{"kty", "kid", "crv", "x", "use", "alg"}},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			m, _ := newManager(t, t.TempDir(), tc.alg, &clock{t0})
			var set struct{ Keys []map[string]any }
			if err := json.Unmarshal(m.KeySet().JWKS, &set); err != nil {
				t.Fatal(err)
			}
			for _, k := range set.Keys {
				for _, f := range tc.fields {
					if _, ok := k[f]; !ok {
						t.Errorf("key lacks %q: %v", f, k)
					}
				}
				for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
					if _, ok := k[private]; ok {
						t.Fatalf("private member %q published", private)
					}
				}
				if k["use"] != "sig" || k["alg"] != tc.alg {
					t.Errorf("use/alg = %v/%v", k["use"], k["alg"])
				}
			}
			// kid is the RFC 7638 thumbprint.
			pub, _ := jwk.ParseKey(mustJSON(t, set.Keys[0]))
			tp, _ := pub.Thumbprint(0x5) // crypto.SHA256
			if got := b64(tp); got != set.Keys[0]["kid"] {
				t.Fatalf("kid %v is not the thumbprint %s", set.Keys[0]["kid"], got)
			}
		})
	}
}

func TestPrivateKeysNotInClearOnDisk(t *testing.T) {
	dir := t.TempDir()
	m, s := newManager(t, dir, keys.RS256, &clock{t0})
	_ = m
	stored, _, _ := s.ListKeys(context.Background())
	if len(stored) == 0 {
		t.Fatal("no keys stored")
	}
	s.Close()
	raw, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatal("store file contains a PEM private key")
	}
	// Unseal each stored key and look for its private bytes in the file.
	for _, sk := range stored {
		der, err := testKEK(t).Open(sk.Sealed, []byte("airlock/signing-key/"+sk.KID))
		if err != nil {
			t.Fatalf("stored key %s does not unseal: %v", sk.KID, err)
		}
		for off := 0; off+32 <= len(der); off += 32 {
			if bytes.Contains(raw, der[off:off+32]) {
				t.Fatalf("store file contains private key %s bytes in clear (offset %d)", sk.KID, off)
			}
		}
	}
}

func TestCacheMaxAgeEndsBeforeActivation(t *testing.T) {
	c := &clock{t0}
	m, _ := newManager(t, t.TempDir(), keys.ES256, c)
	ks := m.KeySet()
	for _, at := range []time.Duration{0, 12 * time.Hour, 23*time.Hour + 59*time.Minute} {
		now := t0.Add(at)
		age := m.CacheMaxAge(ks, now)
		if now.Add(age).After(ks.NextActivation) && age > time.Minute {
			t.Errorf("at +%v max-age %v runs past the next activation", at, age)
		}
		if age < time.Minute {
			t.Errorf("max-age %v below the floor", age)
		}
	}
}

func TestSigningDuringRotationNeverFails(t *testing.T) {
	c := &clock{t0}
	m, _ := newManager(t, t.TempDir(), keys.ES256, c)
	done := make(chan struct{})
	toks := make(chan string, 10000)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				tok, err := m.Sign([]byte(`{}`))
				if err != nil {
					errs <- err
					return
				}
				select {
				case toks <- tok:
				default:
				}
			}
		}()
	}
	for range 5 {
		if _, err := m.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(toks)
	final := m.KeySet()
	n := 0
	for tok := range toks {
		if err := verify(t, final, tok); err != nil {
			t.Fatalf("token signed during rotation does not verify with the published set: %v", err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no token signed during rotation")
	}
}
