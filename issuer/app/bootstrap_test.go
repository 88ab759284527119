package app

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

// TestBootstrapRacingReplicasCreateEachUserOnce starts several bootstraps
// on one store at once, as replicas on one database do: one admin, one demo
// and one gateway user exist afterwards, and one data dir holds all three
// credentials.
func TestBootstrapRacingReplicasCreateEachUserOnce(t *testing.T) {
	st, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const replicas = 4
	dirs := make([]string, replicas)
	errs := make([]error, replicas)
	created := make([]bool, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		dirs[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			created[i], errs[i] = bootstrap(context.Background(), st, dirs[i], time.Now())
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatalf("replica %d: %v", i, errs[i])
		}
		files, _ := filepath.Glob(filepath.Join(dirs[i], "credentials", "*.token"))
		switch {
		case created[i] && len(files) == 3:
			winners++
		case !created[i] && len(files) == 0:
		default:
			t.Fatalf("replica %d: created=%v with %d credential files", i, created[i], len(files))
		}
	}
	users, err := st.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if winners != 1 || len(users) != 3 {
		t.Fatalf("%d replicas bootstrapped, %d users stored; want 1 and 3", winners, len(users))
	}
	// A later start bootstraps nothing.
	again := t.TempDir()
	if ok, err := bootstrap(context.Background(), st, again, time.Now()); ok || err != nil {
		t.Fatalf("a later start: created=%v, %v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(again, "credentials")); !os.IsNotExist(err) {
		t.Fatal("a later start made a credentials directory")
	}
}
