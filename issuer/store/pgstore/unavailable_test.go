package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// TestDatabaseDownFailsFastAndRecovers stops the server under an open
// store: calls fail with ErrUnavailable within seconds (no hang), and work
// again by themselves once the server is back.
func TestDatabaseDownFailsFastAndRecovers(t *testing.T) {
	srv := pgtest.Own(t)
	url := srv.NewDatabase(t)
	ctx := context.Background()
	s, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateUser(ctx, store.User{Username: "alice", Role: store.RoleUser}, 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Halt(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"GetUser":      func() error { _, err := s.GetUser(ctx, "alice"); return err },
		"RecordToken":  func() error { return s.RecordToken(ctx, store.IssuedToken{JTI: "j", UserID: 1}) },
		"ModelConfig":  func() error { _, err := s.ModelConfig(ctx); return err },
		"ListUsers":    func() error { _, err := s.ListUsers(ctx); return err },
		"Ping":         func() error { return s.Ping(ctx, time.Second) },
		"CreateModel":  func() error { return s.CreateModel(ctx, store.Model{Name: "m"}, 0) },
		"Revoke":       func() error { _, _, err := s.Revoke(ctx, store.Revocation{JTI: "j"}); return err },
		"RevisionKeys": func() error { _, err := s.Revision(ctx, store.DomainKeys); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the database down: err = %v, want ErrUnavailable", name, err)
		}
		// The bound is the connect timeout; generous for a loaded machine.
		if took > pgstore.DefaultOpTimeout {
			t.Errorf("%s took %v with the database down", name, took)
		}
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		u, err := s.GetUser(ctx, "alice")
		if err == nil && u.Username == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 30 s after the server came back: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
