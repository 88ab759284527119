package boltstore_test

import (
	"context"
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
