package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// TestReplicasRacingShareTheInvariants races writers spread over three
// stores on one database (three replicas, three connection pools): the
// invariants hold across them as within one.
func TestReplicasRacingShareTheInvariants(t *testing.T) {
	ctx := context.Background()
	first, url := open(t)
	defer first.Close()
	replicas := []*pgstore.Store{first}
	for range 2 {
		s, err := pgstore.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		replicas = append(replicas, s)
	}
	const limit, racers = 4, 15
	for i := range limit - 1 {
		if err := first.CreateModel(ctx, store.Model{Name: fmt.Sprintf("pre-%d", i)}, limit); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	modelErrs := make([]error, racers)
	users := make([]store.User, racers)
	userErrs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := replicas[i%len(replicas)]
			<-start
			modelErrs[i] = s.CreateModel(ctx, store.Model{Name: fmt.Sprintf("racer-%d", i)}, limit)
			users[i], userErrs[i] = s.CreateUser(ctx, store.User{Username: fmt.Sprintf("user-%d", i)}, 0)
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i, err := range modelErrs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, store.ErrLimitExceeded):
			t.Fatalf("racer %d: %v, want nil or ErrLimitExceeded", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racers on %d replicas won the last model place, want 1", won, len(replicas))
	}
	ids := map[uint64]string{}
	for i, u := range users {
		if userErrs[i] != nil {
			t.Fatalf("CreateUser %d: %v", i, userErrs[i])
		}
		if other, dup := ids[u.ID]; dup {
			t.Fatalf("users %s and %s got the same id %d on different replicas", other, u.Username, u.ID)
		}
		ids[u.ID] = u.Username
	}
	if rev, _ := replicas[2].Revision(ctx, store.DomainModels); rev != limit {
		t.Fatalf("models revision %d after %d successful creates, want %d (a refused create must not bump it)", rev, limit, limit)
	}
}
