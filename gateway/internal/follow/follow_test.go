package follow_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/internal/follow"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock records every wait and returns at once.
type fakeClock struct{ waits []time.Duration }

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) bool {
	f.waits = append(f.waits, d)
	return ctx.Err() == nil
}

func TestRun(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, time.Second
	tests := []struct {
		name string
		// attempts: whether each stream delivered before it broke.
		attempts []bool
		// ceilings: the largest wait allowed after each attempt.
		ceilings []time.Duration
	}{
		{name: "failures before any message double the wait up to the maximum",
			attempts: []bool{false, false, false, false, false, false},
			ceilings: []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo, hi, hi}},
		{name: "a stream that delivered starts a fresh backoff",
			attempts: []bool{false, false, false, false, true, false},
			ceilings: []time.Duration{lo, 2 * lo, 4 * lo, 8 * lo, lo, 2 * lo}},
		{name: "a healthy stream after every reconnect keeps the wait short",
			attempts: []bool{true, true, true},
			ceilings: []time.Duration{lo, lo, lo}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clock := &fakeClock{}
			n := 0
			follow.Run(ctx, follow.Config{What: "test watch", MinBackoff: lo, MaxBackoff: hi, Sleep: clock.Sleep},
				func(ctx context.Context) (bool, error) {
					if n == len(tc.attempts) {
						cancel() // the service stops while a stream is open
						<-ctx.Done()
						return true, ctx.Err()
					}
					n++
					return tc.attempts[n-1], errors.New("stream broke")
				})
			if len(clock.waits) != len(tc.ceilings) {
				t.Fatalf("waited %d times (%v), want %d: no wait after the stop", len(clock.waits), clock.waits, len(tc.ceilings))
			}
			for i, w := range clock.waits {
				if w < lo/2 || w > tc.ceilings[i] {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, w, lo/2, tc.ceilings[i])
				}
			}
		})
	}
}

func TestRunStopsDuringTheWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		follow.Run(ctx, follow.Config{MinBackoff: time.Hour, MaxBackoff: time.Hour}, func(context.Context) (bool, error) {
			calls++
			time.AfterFunc(20*time.Millisecond, cancel) // while Run waits an hour
			return false, errors.New("refused")
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept waiting its backoff after the context ended")
	}
	if calls != 1 {
		t.Fatalf("%d attempts, want 1", calls)
	}
}
