package pgstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

func TestReplicasOpeningTogetherMigrateOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const replicas = 5
	stores := make([]*pgstore.Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = pgstore.Open(context.Background(), url)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer stores[i].Close()
		if v := stores[i].SchemaVersion(); v != pgstore.LatestSchemaVersion() || v < 1 {
			t.Fatalf("replica %d at schema %d, want %d", i, v, pgstore.LatestSchemaVersion())
		}
	}
	conn := connect(t, url)
	var applied int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM airlock_schema_version WHERE version_id > 0`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != int(pgstore.LatestSchemaVersion()) {
		t.Fatalf("%d migrations recorded for %d replicas, want each of the %d once", applied, replicas, pgstore.LatestSchemaVersion())
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	s, url := open(t)
	s.Close()
	conn := connect(t, url)
	if _, err := conn.Exec(context.Background(), `INSERT INTO airlock_schema_version (version_id, is_applied) VALUES ($1, true)`,
		pgstore.LatestSchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	_, err := pgstore.Open(context.Background(), url)
	if !errors.Is(err, pgstore.ErrSchemaTooNew) {
		t.Fatalf("Open of a schema %d database = %v, want ErrSchemaTooNew", pgstore.LatestSchemaVersion()+1, err)
	}
}

func TestOpenFailsOnAnUnreachableDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pgstore.Open(ctx, "postgres://airlock:s3cret-password@127.0.0.1:1/airlock?sslmode=disable&connect_timeout=2")
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	if got := err.Error(); strings.Contains(got, "s3cret-password") {
		t.Fatalf("error reveals the password: %s", got)
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// fill writes one of everything through the Store methods.
func fill(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.InitInstanceID(ctx, "inst-1")
	check(err)
	alice, err := s.CreateUser(ctx, store.User{Username: "alice", Role: store.RoleAdmin, Features: []string{"duo_chat"}, CreateTime: t0}, 0)
	check(err)
	bob, err := s.CreateUser(ctx, store.User{Username: "bob", Role: store.RoleUser, CreateTime: t0}, 0)
	check(err)
	h1, h2 := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	check(s.CreatePAT(ctx, store.PAT{ID: "p1", Hash: h1[:], UserID: alice.ID, Username: "alice", CreateTime: t0, ExpireTime: t0.Add(time.Hour)}))
	check(s.CreatePAT(ctx, store.PAT{ID: "p2", Hash: h2[:], UserID: bob.ID, Username: "bob", CreateTime: t0, ExpireTime: t0.Add(time.Hour)}))
	_, err = s.RevokePAT(ctx, "p2", t0.Add(time.Minute))
	check(err)
	_, err = s.ReplaceKeys(ctx, []store.SigningKey{
		{KID: "k2", Alg: "ES256", State: store.KeyPrepared, Sealed: []byte{4, 5}, CreateTime: t0, ActivateTime: t0.Add(time.Hour)},
		{KID: "k1", Alg: "RS256", State: store.KeyActive, Sealed: []byte{1, 2, 3}, CreateTime: t0, ActivateTime: t0, ExpireTime: t0.Add(48 * time.Hour)},
	})
	check(err)
	check(s.RecordToken(ctx, store.IssuedToken{JTI: "j1", UserID: alice.ID, ExpireTime: t0.Add(time.Hour)}))
	check(s.RecordToken(ctx, store.IssuedToken{JTI: "j2", UserID: bob.ID, ExpireTime: t0.Add(time.Hour)}))
	_, _, err = s.Revoke(ctx, store.Revocation{JTI: "j2", ExpireTime: t0.Add(time.Hour), RevokeTime: t0})
	check(err)
	check(s.CreateModel(ctx, store.Model{Name: "base", Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.0.0.1/v1",
		Identifier: "m", SealedAPIKey: []byte{9, 9}, TrustedNetworks: []string{"10.0.0.0/8"}, CreateTime: t0, UpdateTime: t0}, 0))
	check(s.CreateModel(ctx, store.Model{Name: "azure", Family: "gpt", Provider: "azure_openai", Fallback: "base", APIVersion: "v", CreateTime: t0, UpdateTime: t0}, 0))
	check(s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "duo_chat", Model: "azure"}))
	check(s.SetFeatureSetting(ctx, store.FeatureSetting{Feature: "code_completions", Disabled: true}))
}

func TestImportCopiesABoltInstallationWhole(t *testing.T) {
	ctx := context.Background()
	bs, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	fill(t, bs)
	want, err := bs.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ps, _ := open(t)
	defer ps.Close()
	if err := ps.Import(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := ps.Export(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PostgreSQL after import:\n%+v\nbbolt:\n%+v", got, want)
	}
	// The copy goes on where the original stopped.
	carol, err := ps.CreateUser(ctx, store.User{Username: "carol"}, 0)
	if err != nil || carol.ID != want.LastUserID+1 {
		t.Fatalf("next user = %+v %v, want id %d", carol, err, want.LastUserID+1)
	}
	for d, rev := range want.Revisions {
		if r, _ := ps.Revision(ctx, d); r != rev {
			t.Errorf("revision of %s = %d, want %d", d, r, rev)
		}
	}
	if _, _, err := ps.Revoke(ctx, store.Revocation{JTI: "j1"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := ps.Revision(ctx, store.DomainRevocations); r != want.Revisions[store.DomainRevocations]+1 {
		t.Fatalf("revocations revision %d after a revoke, want %d", r, want.Revisions[store.DomainRevocations]+1)
	}
}

func TestImportRefusesANonEmptyDatabase(t *testing.T) {
	ctx := context.Background()
	for name, prep := range map[string]func(s *pgstore.Store) error{
		"an instance id": func(s *pgstore.Store) error { _, err := s.InitInstanceID(ctx, "x"); return err },
		"a user":         func(s *pgstore.Store) error { _, err := s.CreateUser(ctx, store.User{Username: "u"}, 0); return err },
		"a key set":      func(s *pgstore.Store) error { _, err := s.ReplaceKeys(ctx, nil); return err },
		"a minted token": func(s *pgstore.Store) error { return s.RecordToken(ctx, store.IssuedToken{JTI: "j"}) },
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := open(t)
			defer s.Close()
			if err := prep(s); err != nil {
				t.Fatal(err)
			}
			err := s.Import(ctx, store.Snapshot{InstanceID: "other", Users: []store.User{{ID: 7, Username: "z"}}})
			if !errors.Is(err, pgstore.ErrNotEmpty) {
				t.Fatalf("Import over %s = %v, want ErrNotEmpty", name, err)
			}
			if _, err := s.GetUser(ctx, "z"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("refused import wrote a user: %v", err)
			}
		})
	}
}
