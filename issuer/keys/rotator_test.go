package keys_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/keys"
)

// fakeKeys records the times it was advanced to.
type fakeKeys struct {
	mu    sync.Mutex
	ticks []time.Time
	err   error
}

func (f *fakeKeys) Tick(_ context.Context, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ticks = append(f.ticks, now)
	return f.err
}

func (f *fakeKeys) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ticks)
}

func TestRotatorAdvancesOnlyWhenTheGateAllows(t *testing.T) {
	var may atomic.Bool
	f := &fakeKeys{}
	c := &clock{t0}
	r := keys.NewRotator(f, keys.RotatorConfig{Now: c.now, Gate: keys.GateFunc(func(context.Context) bool { return may.Load() })})
	ctx := context.Background()
	if err := r.Check(ctx); err != nil || f.count() != 0 {
		t.Fatalf("a replica without the lease advanced the schedule (%d ticks, %v)", f.count(), err)
	}
	may.Store(true)
	if err := r.Check(ctx); err != nil || f.count() != 1 || !f.ticks[0].Equal(t0) {
		t.Fatalf("lease holder: ticks %v, err %v; want one at the injected now", f.ticks, err)
	}
	f.err = errors.New("store down")
	if err := r.Check(ctx); !errors.Is(err, f.err) {
		t.Fatalf("Check = %v, want the Advancer's error", err)
	}
}

func TestRotatorRunTicksUntilCancelledAndSurvivesFailures(t *testing.T) {
	f := &fakeKeys{err: errors.New("store down")}
	r := keys.NewRotator(f, keys.RotatorConfig{Interval: time.Millisecond, Logger: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for f.count() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("Run stopped ticking after a failed check")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestRotatorDrivesTheManager(t *testing.T) {
	c := &clock{t0}
	m, _ := newManager(t, t.TempDir(), keys.ES256, c)
	before := m.KeySet()
	r := keys.NewRotator(m, keys.RotatorConfig{Now: c.now})
	c.t = before.NextActivation
	if err := r.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := m.KeySet()
	if after.Keys[0].KID != before.Keys[1].KID || after.Revision <= before.Revision {
		t.Fatalf("after the check at the activation time the prepared key %s is not active: %v", before.Keys[1].KID, states(after))
	}
}
