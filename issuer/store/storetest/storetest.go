// Package storetest is the conformance suite every store.Store backend
// passes: the contract in package store's doc comments, as tests. It uses
// only the Store interface, so any backend (embedded or networked) runs it
// unchanged. The concurrent cases race goroutines against one store: a
// backend that checks an invariant outside its write transaction fails them.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
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
		{"a key swap at a stale revision conflicts; of racing swaps exactly one wins", testSwapKeys},
		{"revocations are idempotent and pruned after expiry", testRevocations},
		{"models keep referential integrity", testModels},
		{"model updates run inside the write and keep the chains acyclic", testUpdateModel},
		{"creates stop at the limit the caller passes", testLimits},
		{"racing creates for the last place: exactly one wins", testConcurrentLimits},
		{"racing fallback edits that would close a cycle: exactly one loses", testConcurrentFallbacks},
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
	b, err := s.CreateUser(ctx, store.User{Username: "bob", Role: store.RoleUser, Features: []string{"duo_chat"}, CreateTime: t0}, 0)
	must(t, err)
	a, err := s.CreateUser(ctx, store.User{Username: "alice", Role: store.RoleAdmin, CreateTime: t0}, 0)
	must(t, err)
	if b.ID == 0 || a.ID <= b.ID {
		t.Fatalf("ids = %d, %d; want positive and increasing", b.ID, a.ID)
	}
	_, err = s.CreateUser(ctx, store.User{Username: "bob"}, 0)
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
	u, err := s.CreateUser(ctx, store.User{Username: "u", Role: store.RoleUser}, 0)
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

func testSwapKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := []store.SigningKey{{KID: "a", Alg: "RS256", State: store.KeyActive, Sealed: []byte{1}, CreateTime: t0, ActivateTime: t0}}
	r1, err := s.SwapKeys(ctx, a, 0)
	must(t, err)
	_, err = s.SwapKeys(ctx, nil, 0)
	wantErr(t, "SwapKeys at a stale revision", err, store.ErrConflict)
	keys, rev, err := s.ListKeys(ctx)
	must(t, err)
	if rev != r1 || len(keys) != 1 || keys[0].KID != "a" {
		t.Fatalf("a conflicting swap wrote: %+v at %d, want key a at %d", keys, rev, r1)
	}
	const racers = 8
	ok, refused := tally(t, race(racers, func(i int) error {
		_, err := s.SwapKeys(ctx, []store.SigningKey{{KID: fmt.Sprintf("racer-%d", i), Alg: "RS256", State: store.KeyActive}}, r1)
		return err
	}), store.ErrConflict)
	keys, rev, err = s.ListKeys(ctx)
	must(t, err)
	if ok != 1 || refused != racers-1 || rev != r1+1 || len(keys) != 1 {
		t.Fatalf("%d racing swaps at one revision: %d won, %d ErrConflict; stored %+v at %d", racers, ok, refused, keys, rev)
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
	must(t, s.CreateModel(ctx, m, 0))
	wantErr(t, "duplicate model", s.CreateModel(ctx, m, 0), store.ErrAlreadyExists)
	wantErr(t, "unknown fallback", s.CreateModel(ctx, store.Model{Name: "m2", Fallback: "nope"}, 0), store.ErrReferenceNotFound)
	wantErr(t, "own fallback", s.CreateModel(ctx, store.Model{Name: "m2", Fallback: "m2"}, 0), store.ErrCycle)
	must(t, s.CreateModel(ctx, store.Model{Name: "m2", Fallback: "m1"}, 0))

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
	must(t, s.CreateModel(ctx, store.Model{Name: "m"}, 0))
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

// setFallback is an UpdateModel that changes only the fallback.
func setFallback(s store.Store, name, fallback string) error {
	_, err := s.UpdateModel(context.Background(), name, func(m store.Model) (store.Model, error) {
		m.Fallback = fallback
		return m, nil
	})
	return err
}

func testUpdateModel(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, n := range []string{"a", "b", "c"} {
		must(t, s.CreateModel(ctx, store.Model{Name: n, Family: "mistral", SealedAPIKey: []byte("k-" + n), CreateTime: t0}, 0))
	}
	rev, err := s.Revision(ctx, store.DomainModels)
	must(t, err)

	got, err := s.UpdateModel(ctx, "a", func(old store.Model) (store.Model, error) {
		if old.Name != "a" || !bytes.Equal(old.SealedAPIKey, []byte("k-a")) || !old.CreateTime.Equal(t0) {
			t.Errorf("update saw %+v, want the stored model a", old)
		}
		old.Identifier, old.Fallback, old.UpdateTime = "new", "b", t0.Add(time.Minute)
		return old, nil
	})
	must(t, err)
	stored, err := s.GetModel(ctx, "a")
	must(t, err)
	if got.Identifier != "new" || stored.Identifier != "new" || stored.Fallback != "b" || stored.Family != "mistral" ||
		!bytes.Equal(stored.SealedAPIKey, []byte("k-a")) || !stored.UpdateTime.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after update: returned %+v, stored %+v", got, stored)
	}
	if r, _ := s.Revision(ctx, store.DomainModels); r <= rev {
		t.Fatalf("update left the models revision at %d", r)
	}

	refuse := errors.New("refused by the caller")
	_, err = s.UpdateModel(ctx, "a", func(m store.Model) (store.Model, error) {
		m.Identifier = "lost"
		return m, refuse
	})
	wantErr(t, "update function error", err, refuse)
	_, err = s.UpdateModel(ctx, "a", func(m store.Model) (store.Model, error) {
		m.Name = "renamed"
		return m, nil
	})
	if err == nil {
		t.Fatal("an update that renames the model succeeded")
	}
	_, err = s.UpdateModel(ctx, "zz", func(m store.Model) (store.Model, error) {
		t.Error("update called for a missing model")
		return m, nil
	})
	wantErr(t, "update unknown", err, store.ErrNotFound)
	wantErr(t, "update unknown fallback", setFallback(s, "b", "nope"), store.ErrReferenceNotFound)
	wantErr(t, "own fallback", setFallback(s, "b", "b"), store.ErrCycle)
	wantErr(t, "two-model cycle", setFallback(s, "b", "a"), store.ErrCycle)
	must(t, setFallback(s, "b", "c"))
	wantErr(t, "three-model cycle", setFallback(s, "c", "a"), store.ErrCycle)
	if _, err := s.GetModel(ctx, "renamed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("renamed model stored: %v", err)
	}
	for name, want := range map[string]string{"a": "b", "b": "c", "c": ""} {
		m, err := s.GetModel(ctx, name)
		must(t, err)
		if m.Fallback != want || m.Identifier == "lost" {
			t.Fatalf("model %s after refused updates: %+v, want fallback %q", name, m, want)
		}
	}
}

func testLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	must(t, s.CreateModel(ctx, store.Model{Name: "m1"}, 2))
	must(t, s.CreateModel(ctx, store.Model{Name: "m2"}, 2))
	err := s.CreateModel(ctx, store.Model{Name: "m3"}, 2)
	wantErr(t, "third model, limit 2", err, store.ErrLimitExceeded)
	var le *store.LimitError
	if !errors.As(err, &le) || *le != (store.LimitError{Kind: "model", Count: 2, Limit: 2}) {
		t.Fatalf("limit error = %#v, want a *store.LimitError{model 2 2}", err)
	}
	wantErr(t, "duplicate at the limit", s.CreateModel(ctx, store.Model{Name: "m1"}, 2), store.ErrAlreadyExists)
	must(t, s.CreateModel(ctx, store.Model{Name: "m3"}, 0))
	err = s.CreateModel(ctx, store.Model{Name: "m4"}, 2)
	if !errors.As(err, &le) || le.Count != 3 {
		t.Fatalf("over a lowered limit: %v, want Count 3", err)
	}
	must(t, s.DeleteModel(ctx, "m3"))
	must(t, s.DeleteModel(ctx, "m2"))
	must(t, s.CreateModel(ctx, store.Model{Name: "m4"}, 2)) // a delete frees a place

	_, err = s.CreateUser(ctx, store.User{Username: "u1"}, 1)
	must(t, err)
	_, err = s.CreateUser(ctx, store.User{Username: "u2"}, 1)
	wantErr(t, "second user, limit 1", err, store.ErrLimitExceeded)
	if !errors.As(err, &le) || *le != (store.LimitError{Kind: "user", Count: 1, Limit: 1}) {
		t.Fatalf("limit error = %#v, want a *store.LimitError{user 1 1}", err)
	}
	_, err = s.CreateUser(ctx, store.User{Username: "u2"}, 0)
	must(t, err)
	users, err := s.ListUsers(ctx)
	must(t, err)
	if len(users) != 2 {
		t.Fatalf("%d users, want 2", len(users))
	}
}

// race runs n calls at once and returns their errors.
func race(n int, call func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = call(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors that are want; any other error fails.
func tally(t *testing.T, errs []error, want error) (ok, refused int) {
	t.Helper()
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, want):
			refused++
		default:
			t.Fatalf("unexpected error %v (want nil or %v)", err, want)
		}
	}
	return ok, refused
}

func testConcurrentLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	const limit, racers = 5, 12
	for i := range limit - 1 {
		must(t, s.CreateModel(ctx, store.Model{Name: fmt.Sprintf("pre-%d", i)}, limit))
		_, err := s.CreateUser(ctx, store.User{Username: fmt.Sprintf("pre-%d", i)}, limit)
		must(t, err)
	}
	ok, refused := tally(t, race(racers, func(i int) error {
		return s.CreateModel(ctx, store.Model{Name: fmt.Sprintf("racer-%d", i)}, limit)
	}), store.ErrLimitExceeded)
	cfg, err := s.ModelConfig(ctx)
	must(t, err)
	if ok != 1 || refused != racers-1 || len(cfg.Models) != limit {
		t.Fatalf("models: %d racers for the last place: %d won, %d ErrLimitExceeded, %d stored with limit %d",
			racers, ok, refused, len(cfg.Models), limit)
	}
	ok, refused = tally(t, race(racers, func(i int) error {
		_, err := s.CreateUser(ctx, store.User{Username: fmt.Sprintf("racer-%d", i)}, limit)
		return err
	}), store.ErrLimitExceeded)
	users, err := s.ListUsers(ctx)
	must(t, err)
	if ok != 1 || refused != racers-1 || len(users) != limit {
		t.Fatalf("users: %d racers for the last place: %d won, %d ErrLimitExceeded, %d stored with limit %d",
			racers, ok, refused, len(users), limit)
	}
}

func testConcurrentFallbacks(t *testing.T, s store.Store) {
	// r0..r7 each get the next one as fallback, all at once: any seven of
	// the edits are fine, all eight close a ring.
	ctx := context.Background()
	const ring, rounds = 8, 5
	for round := range rounds {
		name := func(i int) string { return fmt.Sprintf("r%d-%d", round, i%ring) }
		for i := range ring {
			must(t, s.CreateModel(ctx, store.Model{Name: name(i)}, 0))
		}
		ok, refused := tally(t, race(ring, func(i int) error { return setFallback(s, name(i), name(i+1)) }), store.ErrCycle)
		linked := 0
		for i := range ring {
			m, err := s.GetModel(ctx, name(i))
			must(t, err)
			if m.Fallback != "" {
				linked++
			}
		}
		if ok != ring-1 || refused != 1 || linked != ring-1 {
			t.Fatalf("round %d: %d racing fallback edits: %d won, %d ErrCycle, %d of %d models linked (%d is a cycle)",
				round, ring, ok, refused, linked, ring, ring)
		}
	}
}
