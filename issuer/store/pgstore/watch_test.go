package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// watcher runs WatchRevisions on s and records what it delivers.
type watcher struct {
	mu      sync.Mutex
	changes []pgstore.Change
	wake    chan struct{}
	drops   chan error
}

func watch(t *testing.T, s *pgstore.Store, resyncEvery time.Duration) *watcher {
	t.Helper()
	w := &watcher{wake: make(chan struct{}, 1), drops: make(chan error, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- s.WatchRevisions(ctx, pgstore.WatchOptions{ResyncEvery: resyncEvery, OnDisconnect: func(err error) {
			select {
			case w.drops <- err:
			default:
			}
		}}, func(c pgstore.Change) {
			w.mu.Lock()
			w.changes = append(w.changes, c)
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WatchRevisions returned %v, want context.Canceled", err)
		}
	})
	return w
}

// await waits up to within for a delivered change matching ok and returns
// how long it took.
func (w *watcher) await(t *testing.T, within time.Duration, what string, ok func(pgstore.Change) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		w.mu.Lock()
		for _, c := range w.changes {
			if ok(c) {
				w.mu.Unlock()
				return time.Since(start)
			}
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no %s within %v; delivered: %+v", what, within, w.changes)
		}
	}
}

func TestAWriteThroughOneStoreReachesTheOthersWatcher(t *testing.T) {
	ctx := context.Background()
	a, url := open(t)
	defer a.Close()
	b, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w := watch(t, a, time.Hour)
	// The first resync reports every domain at 0.
	w.await(t, 5*time.Second, "initial resync", func(c pgstore.Change) bool {
		return c.Resync && c.Domain == store.DomainModels && c.Revision == 0
	})

	if err := b.CreateModel(ctx, store.Model{Name: "m"}, 0); err != nil {
		t.Fatal(err)
	}
	took := w.await(t, time.Second, "pushed models change", func(c pgstore.Change) bool {
		return !c.Resync && c.Domain == store.DomainModels && c.Revision == 1
	})
	t.Logf("a model created through store b reached store a's watcher in %v", took)
	if _, _, err := b.Revoke(ctx, store.Revocation{JTI: "j"}); err != nil {
		t.Fatal(err)
	}
	w.await(t, time.Second, "pushed revocations change", func(c pgstore.Change) bool {
		return !c.Resync && c.Domain == store.DomainRevocations && c.Revision == 1
	})
	if _, err := b.ReplaceKeys(ctx, nil); err != nil {
		t.Fatal(err)
	}
	w.await(t, time.Second, "pushed keys change", func(c pgstore.Change) bool {
		return !c.Resync && c.Domain == store.DomainKeys && c.Revision == 1
	})
	// A refused write announces nothing.
	if err := b.CreateModel(ctx, store.Model{Name: "m"}, 0); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("duplicate CreateModel = %v", err)
	}
	if err := b.CreateModel(ctx, store.Model{Name: "n"}, 0); err != nil {
		t.Fatal(err)
	}
	w.await(t, time.Second, "models revision 2", func(c pgstore.Change) bool { return c.Domain == store.DomainModels && c.Revision == 2 })
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if c.Domain == store.DomainModels && c.Revision > 2 {
			t.Fatalf("a rolled-back write was announced: %+v", c)
		}
	}
}

func TestWatcherResyncsAfterLosingItsConnection(t *testing.T) {
	ctx := context.Background()
	a, url := open(t)
	defer a.Close()
	w := watch(t, a, time.Hour)
	w.await(t, 5*time.Second, "initial resync", func(c pgstore.Change) bool { return c.Resync })

	// Cut the listening connection, and write while it is down.
	admin := connect(t, url)
	var cut int
	err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'airlock-issuer-watch' AND datname = current_database()`).Scan(&cut)
	if err != nil || cut != 1 {
		t.Fatalf("terminated %d watch connections (%v), want 1", cut, err)
	}
	if _, _, err := a.Revoke(ctx, store.Revocation{JTI: "while-down"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.drops:
		t.Logf("disconnect reported: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the lost connection was not reported to OnDisconnect")
	}
	// Whether or not the push was lost, a resync after reconnecting reports
	// the revision the write reached.
	took := w.await(t, 5*time.Second, "resync after reconnect", func(c pgstore.Change) bool {
		return c.Resync && c.Domain == store.DomainRevocations && c.Revision == 1
	})
	t.Logf("resynced %v after the disconnect was reported", took)
}

func TestWatcherResyncsPeriodically(t *testing.T) {
	a, _ := open(t)
	defer a.Close()
	w := watch(t, a, 200*time.Millisecond)
	keysResyncs := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, c := range w.changes {
			if c.Resync && c.Domain == store.DomainKeys {
				n++
			}
		}
		return n
	}
	deadline := time.After(3 * time.Second)
	for keysResyncs() < 3 {
		select {
		case <-w.wake:
		case <-deadline:
			t.Fatalf("%d resyncs of keys in 3 s with ResyncEvery 200ms, want at least 3", keysResyncs())
		}
	}
}
