package pgstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// holders returns the indexes of the leases whose replica believes it holds.
func holders(ls []*pgstore.Lease) []int {
	var out []int
	for i, l := range ls {
		if l.MayAdvance(context.Background()) {
			out = append(out, i)
		}
	}
	return out
}

// waitOneHolder polls until exactly one lease is held and returns it,
// failing if two are ever held at once or none is within the deadline.
func waitOneHolder(t *testing.T, ls []*pgstore.Lease, skip int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		h := holders(ls)
		if len(h) > 1 {
			t.Fatalf("replicas %v hold the lease at once", h)
		}
		if len(h) == 1 && h[0] != skip {
			return h[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no replica took the lease")
	return -1
}

func TestLeaseOneHolderAndTakeoverAfterItsDeath(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const n = 3
	const term = time.Second
	stores := make([]*pgstore.Store, n)
	leases := make([]*pgstore.Lease, n)
	cancels := make([]context.CancelFunc, n)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	for i := range n {
		s, err := pgstore.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
		leases[i] = s.NewLease(pgstore.LeaseConfig{Name: "key-rotation", Holder: string(rune('a' + i)), Term: term, RenewEvery: 100 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		t.Cleanup(func() { cancel(); s.Close() })
		wg.Add(1)
		go func() { defer wg.Done(); _ = leases[i].Run(ctx) }()
	}
	first := waitOneHolder(t, leases, -1)
	// It keeps the lease across several terms (renewals work) and nobody
	// else ever holds it meanwhile.
	for end := time.Now().Add(3 * term); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if h := holders(leases); len(h) != 1 || h[0] != first {
			t.Fatalf("holders %v while replica %d renews", h, first)
		}
	}
	// The holder dies without releasing: its database connections go first.
	stores[first].Close()
	cancels[first]()
	died := time.Now()
	second := waitOneHolder(t, leases, first)
	took := time.Since(died)
	t.Logf("lease taken over by replica %d %v after the holder died (term %v)", second, took.Round(time.Millisecond), term)
	if took > 10*term {
		t.Fatalf("takeover took %v with a term of %v", took, term)
	}
	// A holder that stops cleanly releases: the third replica takes over
	// without waiting out a term (well within one, on a loaded machine
	// within a few).
	cancels[second]()
	third := waitOneHolder(t, leases, second)
	if third == first || third == second {
		t.Fatalf("replica %d took the lease, want the one still running", third)
	}
}
