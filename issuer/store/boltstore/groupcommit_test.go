package boltstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return db
}

// putKey writes k and reports the transaction it ran in.
func putKey(k string, txs chan<- int) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		txs <- tx.ID()
		return tx.Bucket([]byte("b")).Put([]byte(k), []byte("v"))
	}
}

// waitQueued waits until n writes are queued.
func waitQueued(t *testing.T, g *groupCommit, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g.mu.Lock()
		q := len(g.queue)
		g.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// doAll runs do(writes[i]) concurrently and returns each result.
func doAll(g *groupCommit, writes []func(*bolt.Tx) error) (wait func() []error) {
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = g.do(w) }()
	}
	return func() []error { wg.Wait(); return errs }
}

// Writes announced by expect share one commit: the leader waits until every
// announced write has arrived.
func TestGroupCommitWaitsForAnnouncedWrites(t *testing.T) {
	db := testDB(t)
	g := newGroupCommit(db)
	g.maxWait = time.Hour // only the announcements end the wait
	const n = 8
	arrived := make([]func(), n)
	for i := range arrived {
		arrived[i] = g.expect()
	}
	txs := make(chan int, n)
	writes := make([]func(*bolt.Tx) error, n)
	for i := range writes {
		writes[i] = putKey(fmt.Sprint(i), txs)
	}
	wait := doAll(g, writes)
	waitQueued(t, g, n)
	for _, a := range arrived {
		a()
	}
	for i, err := range wait() {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	close(txs)
	seen := map[int]bool{}
	for id := range txs {
		seen[id] = true
	}
	if len(seen) != 1 {
		t.Fatalf("%d writes committed in %d transactions, want 1", n, len(seen))
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if k := tx.Bucket([]byte("b")).Stats().KeyN; k != n {
			t.Fatalf("%d keys stored, want %d", k, n)
		}
		return nil
	})
}

// With no write announced, a write commits at once: a lone mint never
// waits for company.
func TestGroupCommitLoneWriteDoesNotWait(t *testing.T) {
	g := newGroupCommit(testDB(t))
	g.maxWait = time.Hour
	done := make(chan error, 1)
	go func() { done <- g.do(putKey("k", make(chan int, 1))) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone write waited for company")
	}
}

// An announcement withdrawn without a write (the mint failed) ends the
// wait.
func TestGroupCommitWithdrawnAnnouncementEndsWait(t *testing.T) {
	g := newGroupCommit(testDB(t))
	g.maxWait = time.Hour
	arrived := g.expect()
	wait := doAll(g, []func(*bolt.Tx) error{putKey("k", make(chan int, 1))})
	waitQueued(t, g, 1)
	arrived()
	if err := wait()[0]; err != nil {
		t.Fatal(err)
	}
}

// The wait for announced writes is bounded.
func TestGroupCommitWaitIsBounded(t *testing.T) {
	g := newGroupCommit(testDB(t))
	g.maxWait = 20 * time.Millisecond
	defer g.expect()() // announced, never arrives
	start := time.Now()
	if err := g.do(putKey("k", make(chan int, 1))); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < g.maxWait {
		t.Fatalf("committed after %v, before the %v wait for the announced write", d, g.maxWait)
	}
}

// A write that fails (or panics) gets its own error and nothing of it is
// stored; the writes it shared a batch with are committed.
func TestGroupCommitFailingWriteIsIsolated(t *testing.T) {
	db := testDB(t)
	g := newGroupCommit(db)
	g.maxWait = time.Hour
	errBad := errors.New("bad record")
	arrived := []func(){g.expect(), g.expect(), g.expect(), g.expect()}
	txs := make(chan int, 16)
	half := func(k string, fail func() error) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			if err := tx.Bucket([]byte("b")).Put([]byte(k), []byte("v")); err != nil {
				return err
			}
			return fail()
		}
	}
	wait := doAll(g, []func(*bolt.Tx) error{
		putKey("a", txs),
		half("bad", func() error { return errBad }),
		half("panic", func() error { panic("boom") }),
		putKey("b", txs),
	})
	waitQueued(t, g, 4)
	for _, a := range arrived {
		a()
	}
	errs := wait()
	if errs[0] != nil || errs[3] != nil {
		t.Fatalf("good writes: %v, %v", errs[0], errs[3])
	}
	if !errors.Is(errs[1], errBad) {
		t.Fatalf("failing write: %v, want its own error", errs[1])
	}
	if errs[2] == nil {
		t.Fatal("panicking write: no error")
	}
	_ = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for k, want := range map[string]bool{"a": true, "b": true, "bad": false, "panic": false} {
			if got := b.Get([]byte(k)) != nil; got != want {
				t.Errorf("key %q stored = %v, want %v", k, got, want)
			}
		}
		return nil
	})
}

// Many concurrent writes, some announced: every caller gets its result and
// the lead is always passed on (no caller is stranded in the queue).
func TestGroupCommitUnderLoad(t *testing.T) {
	db := testDB(t)
	g := newGroupCommit(db)
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				arrived := g.expect()
				arrived()
				if err := g.do(putKey(fmt.Sprintf("%d-%d", w, i), make(chan int, 1))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) != 0 || g.leading || g.expected != 0 {
		t.Fatalf("after the load: queue %d, leading %v, expected %d", len(g.queue), g.leading, g.expected)
	}
}
