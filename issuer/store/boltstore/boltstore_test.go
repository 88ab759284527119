package boltstore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	"github.com/airlock-dev/airlock/issuer/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := boltstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.InitInstanceID(ctx, "inst"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReplaceKeys(ctx, []store.SigningKey{{KID: "k"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id, _ := s.InitInstanceID(ctx, "other")
	keys, rev, err := s.ListKeys(ctx)
	if err != nil || id != "inst" || len(keys) != 1 || rev != 1 {
		t.Fatalf("after reopen: id %q keys %v rev %d err %v", id, keys, rev, err)
	}
}

// OpenExisting refuses a directory without a store, creating nothing, and
// opens one that exists. (A store held by another process is ErrInUse: the
// e2e test of issue-pat runs it beside a live issuer.)
func TestOpenExisting(t *testing.T) {
	dir := t.TempDir()
	_, err := boltstore.OpenExisting(dir)
	if !errors.Is(err, boltstore.ErrNoStore) || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "stat ") {
		t.Fatalf("OpenExisting(empty dir) = %v, want ErrNoStore carrying the stat error", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("OpenExisting created %v", entries)
	}
	s, err := boltstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = boltstore.OpenExisting(dir)
	if err != nil {
		t.Fatalf("OpenExisting(a store) = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
