package broadcast_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/issuer/broadcast"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSlowWatcherNeverBlocksAndSeesLatest(t *testing.T) {
	var h broadcast.Hub[string]
	slow := h.Subscribe()
	defer slow.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= 10000; i++ {
			h.Publish(i, "v")
		}
		h.Publish(10001, "last")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a watcher that never reads")
	}
	<-slow.C()
	if rev, v := h.Current(); rev != 10001 || v != "last" {
		t.Fatalf("Current = %d %q", rev, v)
	}
	select {
	case <-slow.C():
		t.Fatal("notifications were not coalesced")
	default:
	}
}

func TestOlderRevisionIgnored(t *testing.T) {
	var h broadcast.Hub[int]
	h.Publish(5, 5)
	h.Publish(3, 3)
	if rev, v := h.Current(); rev != 5 || v != 5 {
		t.Fatalf("Current = %d %d, want 5 5", rev, v)
	}
}

func TestCloseUnsubscribes(t *testing.T) {
	var h broadcast.Hub[int]
	s := h.Subscribe()
	if h.Watchers() != 1 {
		t.Fatal("not subscribed")
	}
	s.Close()
	s.Close()
	if h.Watchers() != 0 {
		t.Fatal("Close did not unsubscribe")
	}
}
