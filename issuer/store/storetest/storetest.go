// Package storetest is the conformance suite every store.Store backend
// passes: the contract in package store's doc comments, as tests.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

// Run runs the suite. newStore returns an empty store for one subtest; the
// suite closes it.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"instance id is set once and then kept", testInstanceID},
		{"a named secret is set once and then kept", testSecret},
		{"users get increasing ids and unique names", testUsers},
		{"personal access tokens are found by hash and revoked once", testPATs},
		{"key set is replaced atomically with a new revision", testKeys},
		{"revocations are idempotent and pruned after expiry", testRevocations},
		{"models keep referential integrity", testModels},
		{"revisions increase on every write to their domain only", testRevisions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func testInstanceID(t *testing.T, s store.Store) {
	ctx := context.Background()
	id, err := s.InitInstanceID(ctx, "first")
	must(t, err)
	if id != "first" {
		t.Fatalf("first InitInstanceID = %q", id)
	}
	id, err = s.InitInstanceID(ctx, "second")
	must(t, err)
	if id != "first" {
		t.Fatalf("second InitInstanceID = %q, want the first id kept", id)
	}
}

func testSecret(t *testing.T, s store.Store) {
	ctx := context.Background()
	got, err := s.InitSecret(ctx, "a", []byte("first"))
	must(t, err)
	if string(got) != "first" {
		t.Fatalf("first InitSecret = %q", got)
	}
	got, err = s.InitSecret(ctx, "a", []byte("second"))
	must(t, err)
	if string(got) != "first" {
		t.Fatalf("second InitSecret = %q, want the first secret kept", got)
	}
	got, err = s.InitSecret(ctx, "b", []byte("other"))
	must(t, err)
	if string(got) != "other" {
		t.Fatalf("InitSecret of another name = %q, want its own secret", got)
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	b, err := s.CreateUser(ctx, store.User{Username: "bob", Role: store.RoleUser, Features: []string{"duo_chat"}, CreateTime: t0})
	must(t, err)
	a, err := s.CreateUser(ctx, store.User{Username: "alice", Role: store.RoleAdmin, CreateTime: t0})
	must(t, err)
	if b.ID == 0 || a.ID <= b.ID {
		t.Fatalf("ids = %d, %d; want positive and increasing", b.ID, a.ID)
	}
	_, err = s.CreateUser(ctx, store.User{Username: "bob"})
	wantErr(t, "duplicate user", err, store.ErrAlreadyExists)

	got, err := s.GetUser(ctx, "bob")
	must(t, err)
	if got.ID != b.ID || got.Role != store.RoleUser || len(got.Features) != 1 || !got.CreateTime.Equal(t0) {
		t.Fatalf("GetUser = %+v", got)
	}
	got, err = s.GetUserByID(ctx, a.ID)
	must(t, err)
	if got.Username != "alice" {
		t.Fatalf("GetUserByID = %+v", got)
	}
	_, err = s.GetUser(ctx, "nobody")
	wantErr(t, "GetUser unknown", err, store.ErrNotFound)
	_, err = s.GetUserByID(ctx, 999)
	wantErr(t, "GetUserByID unknown", err, store.ErrNotFound)

	all, err := s.ListUsers(ctx)
	must(t, err)
	if len(all) != 2 || all[0].Username != "alice" || all[1].Username != "bob" {
		t.Fatalf("ListUsers = %+v, want alice, bob", all)
	}
}

func testPATs(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, err := s.CreateUser(ctx, store.User{Username: "u", Role: store.RoleUser})
	must(t, err)
	h := sha256.Sum256([]byte("secret"))
	p := store.PAT{ID: "p1", Hash: h[:], UserID: u.ID, Username: "u", CreateTime: t0, ExpireTime: t0.Add(time.Hour)}
	must(t, s.CreatePAT(ctx, p))
	wantErr(t, "same id", s.CreatePAT(ctx, store.PAT{ID: "p1", Hash: []byte("other"), UserID: u.ID}), store.ErrAlreadyExists)
	wantErr(t, "same hash", s.CreatePAT(ctx, store.PAT{ID: "p2", Hash: h[:], UserID: u.ID}), store.ErrAlreadyExists)
	wantErr(t, "unknown user", s.CreatePAT(ctx, store.PAT{ID: "p3", Hash: []byte("x"), UserID: 999}), store.ErrNotFound)

	got, err := s.GetPATByHash(ctx, h[:])
	must(t, err)
	if got.ID != "p1" || !bytes.Equal(got.Hash, h[:]) || !got.ExpireTime.Equal(p.ExpireTime) || !got.RevokeTime.IsZero() {
		t.Fatalf("GetPATByHash = %+v", got)
	}
	_, err = s.GetPATByHash(ctx, []byte("nope"))
	wantErr(t, "unknown hash", err, store.ErrNotFound)

	r, err := s.RevokePAT(ctx, "p1", t0.Add(time.Minute))
	must(t, err)
	if !r.RevokeTime.Equal(t0.Add(time.Minute)) {
		t.Fatalf("RevokeTime = %v", r.RevokeTime)
	}
	r, err = s.RevokePAT(ctx, "p1", t0.Add(time.Hour))
	must(t, err)
	if !r.RevokeTime.Equal(t0.Add(time.Minute)) {
		t.Fatalf("second revoke changed RevokeTime to %v", r.RevokeTime)
	}
	got, err = s.GetPATByHash(ctx, h[:])
	must(t, err)
	if got.RevokeTime.IsZero() {
		t.Fatal("revocation not persisted")
	}
	_, err = s.RevokePAT(ctx, "nope", t0)
	wantErr(t, "revoke unknown", err, store.ErrNotFound)
}

func testKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	keys, rev, err := s.ListKeys(ctx)
	must(t, err)
	if len(keys) != 0 || rev != 0 {
		t.Fatalf("empty store: %d keys at revision %d", len(keys), rev)
	}
	set := []store.SigningKey{
		{KID: "a", Alg: "RS256", State: store.KeyActive, Sealed: []byte{1, 2, 3}, CreateTime: t0, ActivateTime: t0},
		{KID: "b", Alg: "RS256", State: store.KeyPrepared, Sealed: []byte{4}, CreateTime: t0, ActivateTime: t0.Add(24 * time.Hour)},
	}
	r1, err := s.ReplaceKeys(ctx, set)
	must(t, err)
	r2, err := s.ReplaceKeys(ctx, set[1:])
	must(t, err)
	if r2 <= r1 || r1 == 0 {
		t.Fatalf("revisions %d then %d, want increasing", r1, r2)
	}
	keys, rev, err = s.ListKeys(ctx)
	must(t, err)
	if rev != r2 || len(keys) != 1 || keys[0].KID != "b" || !bytes.Equal(keys[0].Sealed, []byte{4}) || !keys[0].ActivateTime.Equal(set[1].ActivateTime) {
		t.Fatalf("ListKeys = %+v at %d", keys, rev)
	}
}

func testRevocations(t *testing.T, s store.Store) {
	ctx := context.Background()
	must(t, s.RecordToken(ctx, store.IssuedToken{JTI: "j1", UserID: 7, ExpireTime: t0.Add(time.Hour)}))
	must(t, s.RecordToken(ctx, store.IssuedToken{JTI: "j2", UserID: 7, ExpireTime: t0.Add(2 * time.Hour)}))
	wantErr(t, "reused jti", s.RecordToken(ctx, store.IssuedToken{JTI: "j1"}), store.ErrAlreadyExists)
	tok, err := s.GetToken(ctx, "j1")
	must(t, err)
	if tok.UserID != 7 {
		t.Fatalf("GetToken = %+v", tok)
	}
	r1, created, err := s.Revoke(ctx, store.Revocation{JTI: "j1", ExpireTime: t0.Add(time.Hour), RevokeTime: t0})
	must(t, err)
	if !created || r1.Seq == 0 {
		t.Fatalf("first Revoke = %+v, created %v", r1, created)
	}
	again, created, err := s.Revoke(ctx, store.Revocation{JTI: "j1", ExpireTime: t0.Add(time.Hour), RevokeTime: t0.Add(time.Minute)})
	must(t, err)
	if created || again.Seq != r1.Seq || !again.RevokeTime.Equal(t0) {
		t.Fatalf("second Revoke = %+v, created %v; want the first kept", again, created)
	}
	r2, _, err := s.Revoke(ctx, store.Revocation{JTI: "j2", ExpireTime: t0.Add(2 * time.Hour), RevokeTime: t0})
	must(t, err)
	list, rev, err := s.ListRevocations(ctx)
	must(t, err)
	if len(list) != 2 || list[0].JTI != "j1" || list[1].JTI != "j2" || rev != r2.Seq {
		t.Fatalf("ListRevocations = %+v at %d", list, rev)
	}

	n, err := s.PruneTokens(ctx, t0.Add(time.Hour))
	must(t, err)
	if n != 1 {
		t.Fatalf("PruneTokens pruned %d revocations, want 1 (expiry at now is expired)", n)
	}
	_, err = s.GetToken(ctx, "j1")
	wantErr(t, "pruned token", err, store.ErrNotFound)
	if _, err := s.GetToken(ctx, "j2"); err != nil {
		t.Fatalf("unexpired token pruned: %v", err)
	}
	list, rev2, err := s.ListRevocations(ctx)
	must(t, err)
	if len(list) != 1 || list[0].JTI != "j2" || rev2 <= rev {
		t.Fatalf("after prune: %+v at %d (before %d)", list, rev2, rev)
	}
}

func testModels(t *testing.T, s store.Store) {
	ctx := context.Background()
	m := store.Model{Name: "m1", Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.0.0.1/v1",
		Identifier: "x", SealedAPIKey: []byte("sealed"), TrustedNetworks: []string{"10.0.0.0/8"}, CreateTime: t0, UpdateTime: t0}
	must(t, s.CreateModel(ctx, m))
	wantErr(t, "duplicate model", s.CreateModel(ctx, m), store.ErrAlreadyExists)
	wantErr(t, "unknown fallback", s.CreateModel(ctx, store.Model{Name: "m2", Fallback: "nope"}), store.ErrReferenceNotFound)
	must(t, s.CreateModel(ctx, store.Model{Name: "m2", Fallback: "m1"}))
	wantErr(t, "update unknown", s.UpdateModel(ctx, store.Model{Name: "zz"}), store.ErrNotFound)
	wantErr(t, "update unknown fallback", s.UpdateModel(ctx, store.Model{Name: "m2", Fallback: "nope"}), store.ErrReferenceNotFound)

	got, err := s.GetModel(ctx, "m1")
	must(t, err)
	if got.Endpoint != m.Endpoint || !bytes.Equal(got.SealedAPIKey, m.SealedAPIKey) || len(got.TrustedNetworks) != 1 {
		t.Fatalf("GetModel = %+v", got)
	}
	_, err = s.GetModel(ctx, "zz")
	wantErr(t, "get unknown", err, store.ErrNotFound)

	wantErr(t, "setting unknown model", s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "duo_chat", Model: "zz"}), store.ErrReferenceNotFound)
	must(t, s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "duo_chat", Model: "m2"}))
	must(t, s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "code_completions", Disabled: true}))

	wantErr(t, "delete fallback target", s.DeleteModel(ctx, "m1"), store.ErrInUse)
	wantErr(t, "delete bound model", s.DeleteModel(ctx, "m2"), store.ErrInUse)
	wantErr(t, "delete unknown", s.DeleteModel(ctx, "zz"), store.ErrNotFound)

	cfg, err := s.ModelConfig(ctx)
	must(t, err)
	if len(cfg.Models) != 2 || cfg.Models[0].Name != "m1" || len(cfg.Settings) != 2 || cfg.Settings[0].Feature != "code_completions" {
		t.Fatalf("ModelConfig = %+v", cfg)
	}
	must(t, s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "duo_chat", Disabled: true}))
	must(t, s.DeleteModel(ctx, "m2"))
	must(t, s.DeleteModel(ctx, "m1"))
	cfg2, err := s.ModelConfig(ctx)
	must(t, err)
	if len(cfg2.Models) != 0 || cfg2.Revision <= cfg.Revision {
		t.Fatalf("after deletes: %+v (revision before %d)", cfg2, cfg.Revision)
	}
}

func testRevisions(t *testing.T, s store.Store) {
	ctx := context.Background()
	rev := func(d store.Domain) uint64 {
		r, err := s.Revision(ctx, d)
		must(t, err)
		return r
	}
	must(t, s.CreateModel(ctx, store.Model{Name: "m"}))
	if rev(store.DomainModels) != 1 || rev(store.DomainKeys) != 0 || rev(store.DomainRevocations) != 0 {
		t.Fatal("a model write changed another domain's revision, or not its own")
	}
	_, err := s.ReplaceKeys(ctx, nil)
	must(t, err)
	_, _, err = s.Revoke(ctx, store.Revocation{JTI: "j", ExpireTime: t0})
	must(t, err)
	if rev(store.DomainModels) != 1 || rev(store.DomainKeys) != 1 || rev(store.DomainRevocations) != 1 {
		t.Fatal("revisions not per domain")
	}
}
