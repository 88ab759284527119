package keys_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

// replicas returns n managers sharing one store, as issuer replicas on one
// database do. Gate says no for all of them (New still creates the first
// keys once).
func replicas(t *testing.T, n int, c *clock) ([]*keys.Manager, store.Store) {
	t.Helper()
	s, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	never := keys.GateFunc(func(context.Context) bool { return false })
	ms := make([]*keys.Manager, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms[i], errs[i] = keys.New(context.Background(), keys.Config{
				Store: s, KEK: testKEK(t), Alg: keys.ES256, RotationPeriod: 24 * time.Hour,
				MaxTokenTTL: time.Hour, Leeway: time.Minute, Now: c.now, Gate: never,
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ms, s
}

func activeKID(t *testing.T, ks *keys.KeySet) string {
	t.Helper()
	for _, k := range ks.Keys {
		if k.State == store.KeyActive {
			return k.KID
		}
	}
	t.Fatal("no active key published")
	return ""
}

func storedActivations(t *testing.T, s store.Store) (active string, n int) {
	t.Helper()
	ks, _, err := s.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if k.State == store.KeyActive {
			active = k.KID
			n++
		}
	}
	return active, n
}

func TestReplicasStartingTogetherCreateOneKeySet(t *testing.T) {
	c := &clock{t0}
	ms, s := replicas(t, 3, c)
	stored, _, err := s.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 {
		t.Fatalf("3 replicas starting on an empty store stored %d keys, want one active and one prepared", len(stored))
	}
	for _, m := range ms {
		if err := m.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := activeKID(t, ms[0].KeySet())
	for i, m := range ms {
		if got := activeKID(t, m.KeySet()); got != want {
			t.Errorf("replica %d signs with %s, replica 0 with %s", i, got, want)
		}
		if kidOf(t, mustSign(t, m)) != want {
			t.Errorf("replica %d did not sign with the stored active key", i)
		}
	}
}

func TestRacingTicksAtActivationRotateOnce(t *testing.T) {
	c := &clock{t0}
	ms, s := replicas(t, 3, c)
	before, _ := storedActivations(t, s)
	c.t = t0.Add(24 * time.Hour) // the prepared key's time has come
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Tick(context.Background(), c.t); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	after, n := storedActivations(t, s)
	stored, _, _ := s.ListKeys(context.Background())
	// One rotation: the old active retired, the prepared one active, one
	// new prepared key. Two rotations would leave four keys.
	if n != 1 || after == before || len(stored) != 3 {
		t.Fatalf("3 replicas ticking at the activation time: %d keys stored, active %s (was %s)", len(stored), after, before)
	}
	for i, m := range ms {
		if got := activeKID(t, m.KeySet()); got != after {
			t.Errorf("replica %d publishes active %s, the store has %s", i, got, after)
		}
	}
}

func TestRotateOnAnyReplicaRotatesOncePerCall(t *testing.T) {
	c := &clock{t0}
	ms, s := replicas(t, 3, c)
	var wg sync.WaitGroup
	for _, m := range ms[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Rotate(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	stored, _, err := s.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	retired := 0
	for _, k := range stored {
		if k.State == store.KeyRetired {
			retired++
		}
	}
	if retired != 2 {
		t.Fatalf("two racing RotateKeys calls retired %d keys, want 2 (one rotation each)", retired)
	}
	// The third replica learns of it by Reload, as a watch notification
	// makes it do, and signs with the new active key.
	want, _ := storedActivations(t, s)
	if err := ms[2].Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := kidOf(t, mustSign(t, ms[2])); got != want {
		t.Fatalf("after Reload replica 2 signs with %s, the store's active key is %s", got, want)
	}
}

func mustSign(t *testing.T, m *keys.Manager) string {
	t.Helper()
	tok, err := m.Sign([]byte(`{"sub":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
