package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

// TestGenGolden dumps every record the current code writes.
func TestGenGolden(t *testing.T) {
	if os.Getenv("GEN_GOLDEN") == "" {
		t.Skip()
	}
	dir := t.TempDir()
	ctx := context.Background()
	s, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	t1 := time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("X", 3600))
	u, _ := s.CreateUser(ctx, store.User{Username: "alice", Role: store.RoleAdmin, Features: []string{"duo_chat", "code_completions"}, CreateTime: t0})
	s.CreateUser(ctx, store.User{Username: "bob", Role: store.RoleUser, CreateTime: t0})
	must(t, s.CreatePAT(ctx, store.PAT{ID: "pat-1", Hash: []byte{0xde, 0xad, 0xbe, 0xef}, UserID: u.ID, Username: "alice", CreateTime: t0, ExpireTime: t1}))
	must(t, s.CreatePAT(ctx, store.PAT{ID: "pat-2", Hash: []byte{1, 2}, UserID: u.ID, Username: "alice", CreateTime: t0, ExpireTime: t1}))
	if _, err := s.RevokePAT(ctx, "pat-2", t1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceKeys(ctx, []store.SigningKey{
		{KID: "k1", Alg: "RS256", State: store.KeyActive, Sealed: []byte{9, 8, 7}, CreateTime: t0, ActivateTime: t0, ExpireTime: t1},
		{KID: "k0", Alg: "ES256", State: store.KeyRetired, Sealed: []byte{6}, CreateTime: t0, ActivateTime: t0, RetireTime: t1, ExpireTime: t1},
	}); err != nil {
		t.Fatal(err)
	}
	must(t, s.RecordToken(ctx, store.IssuedToken{JTI: "jti-1", UserID: u.ID, ExpireTime: t1}))
	if _, _, err := s.Revoke(ctx, store.Revocation{JTI: "jti-1", ExpireTime: t1, RevokeTime: t0}); err != nil {
		t.Fatal(err)
	}
	must(t, s.CreateModel(ctx, store.Model{Name: "base", Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.0.0.1:8000/v1",
		Identifier: "mistralai/Mistral-7B", SealedAPIKey: []byte{5, 5, 5}, TrustedNetworks: []string{"10.0.0.0/8"}, CreateTime: t0, UpdateTime: t1}))
	must(t, s.CreateModel(ctx, store.Model{Name: "azure", Family: "gpt", Provider: "azure_openai", Endpoint: "https://x.openai.azure.com",
		Identifier: "dep", Fallback: "base", APIVersion: "2024-02-01", CreateTime: t0, UpdateTime: t0}))
	must(t, s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "duo_chat", Model: "base"}))
	must(t, s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "code_completions", Disabled: true}))
	if _, err := s.InitInstanceID(ctx, "inst-1"); err != nil {
		t.Fatal(err)
	}
	must(t, s.Close())
	raw, err := os.ReadFile(filepath.Join(dir, boltstore.FileName))
	must(t, err)
	must(t, os.WriteFile("testdata/v0/issuer.db", raw, 0o644))
	db, err := bolt.Open(filepath.Join(dir, boltstore.FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out := "testdata/v0"
	must(t, db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) == "meta" || string(name) == "user_ids" || string(name) == "pat_hash" {
				return nil // binary index values; rebuilt by the test
			}
			d := filepath.Join(out, string(name))
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			return b.ForEach(func(k, v []byte) error {
				return os.WriteFile(filepath.Join(d, string(k)+".json"), v, 0o644)
			})
		})
	}))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
