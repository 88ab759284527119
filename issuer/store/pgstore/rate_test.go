package pgstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// TestRateIsSharedByReplicas takes from one user's bucket through three
// stores (replicas) at once: together they allow the burst once, not three
// times, and another user's bucket is apart.
func TestRateIsSharedByReplicas(t *testing.T) {
	s, url := open(t)
	defer s.Close()
	const perMinute = 10
	rates := []*pgstore.Rate{s.NewRate(perMinute)}
	for range 2 {
		r, err := pgstore.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rates = append(rates, r.NewRate(perMinute))
	}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := rates[i%3].Take(context.Background(), "user:alice")
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	// 30 takes run in well under the 6 s a token takes to refill; allow one
	// refill for a very slow machine.
	if n := allowed.Load(); n < perMinute || n > perMinute+1 {
		t.Fatalf("3 replicas allowed alice %d mints of a %d/min burst, want %d", n, perMinute, perMinute)
	}
	if ok, err := rates[1].Take(context.Background(), "user:bob"); !ok || err != nil {
		t.Fatalf("bob refused (%v, %v) after alice used up her bucket", ok, err)
	}
	if ok, _ := s.NewRate(0).Take(context.Background(), "user:alice"); !ok {
		t.Fatal("a zero rate refused")
	}
}
