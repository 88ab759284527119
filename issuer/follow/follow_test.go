package follow_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/issuer/follow"
	"github.com/airlock-dev/airlock/issuer/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeDomain is a publisher whose store is at stored and which fails its
// first failures reloads.
type fakeDomain struct {
	mu        sync.Mutex
	stored    uint64
	published uint64
	failures  int
	reloads   atomic.Int32
}

func (d *fakeDomain) target() follow.Target {
	return follow.Target{
		Revision: func() uint64 { d.mu.Lock(); defer d.mu.Unlock(); return d.published },
		Reload: func(context.Context) error {
			d.reloads.Add(1)
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.failures > 0 {
				d.failures--
				return errors.New("database unreachable")
			}
			d.published = max(d.published, d.stored)
			return nil
		},
	}
}

func (d *fakeDomain) set(rev uint64) { d.mu.Lock(); d.stored = rev; d.mu.Unlock() }

func TestFollow(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		deliver  []uint64 // revisions pushed, in order
		stored   uint64
		want     uint64
	}{
		{"a pushed revision is reloaded and published", 0, []uint64{3}, 3, 3},
		{"a failed reload is retried until it succeeds", 2, []uint64{5}, 5, 5},
		{"an old or repeated revision (a resync) reloads nothing new", 0, []uint64{0}, 0, 0},
		{"a burst ends on the latest revision", 0, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, 8, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDomain{failures: tc.failures}
			d.set(tc.stored)
			other := &fakeDomain{}
			push := make(chan uint64)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = follow.Run(ctx, follow.Config{
					RetryEvery: 10 * time.Millisecond,
					Targets:    map[store.Domain]follow.Target{store.DomainModels: d.target(), store.DomainKeys: other.target()},
					Watch: func(ctx context.Context, fn func(store.Domain, uint64)) error {
						for {
							select {
							case <-ctx.Done():
								return ctx.Err()
							case rev := <-push:
								fn(store.DomainModels, rev)
								fn("unknown", rev) // ignored
							}
						}
					},
				})
			}()
			for _, rev := range tc.deliver {
				push <- rev
			}
			deadline := time.Now().Add(10 * time.Second)
			for d.target().Revision() != tc.want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			<-done
			if got := d.target().Revision(); got != tc.want {
				t.Fatalf("published revision %d, want %d", got, tc.want)
			}
			if tc.want == 0 && d.reloads.Load() != 0 {
				t.Fatalf("%d reloads for a revision already published", d.reloads.Load())
			}
			if other.reloads.Load() != 0 {
				t.Fatalf("a domain nobody changed was reloaded %d times", other.reloads.Load())
			}
		})
	}
}
