package boltstore

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Group commit of token records. Every mint writes one record and must not
// answer before it is durable; a bbolt commit costs two fdatasyncs (≈ 0.7 ms
// and ≈ 0.1 ms of kernel CPU each on the benchmark machine) whatever it
// holds, so the records of concurrent mints share commits.
//
// bbolt's own Batch waits a fixed delay for company and commits batches
// one after another as they close, so under load each commit held only
// the one or two records that arrived during the previous one, and a lone
// mint still waited the delay. Here a record commits at once when no other
// mint is on its way (ExpectRecord counts the mints between starting to
// sign and recording); otherwise the commit waits for them, at most
// recordMaxWait after its oldest record arrived. One commit runs at a
// time: records arriving meanwhile form the next batch.
const (
	// recordMaxWait bounds what a record waits for others: about three
	// commits, so under load a commit holds several mints' records
	// while the wait stays small against the time a loaded issuer takes
	// to sign (tens of ms per call at 64 concurrent RS256 mints).
	recordMaxWait = 2 * time.Millisecond
	// recordMaxBatch bounds one commit's records.
	recordMaxBatch = 512
)

// errLead tells a queued RecordToken call that it now commits the queue.
var errLead = errors.New("boltstore: lead the next commit")

type pendingRecord struct {
	write   func(*bolt.Tx) error
	arrived time.Time
	done    chan error // cap 1: the commit's result, or errLead
}

// groupCommit queues writes and commits them in shared transactions. The
// caller that finds no commit under way leads: it waits for the mints
// announced by expect (bounded by recordMaxWait), commits the whole queue,
// delivers each write's result, and hands the lead to the first write
// queued meanwhile, so no caller waits longer than for its own commit
// and the one before it, and no goroutine outlives a call.
type groupCommit struct {
	db       *bolt.DB
	maxWait  time.Duration // recordMaxWait; tests set longer
	mu       sync.Mutex
	queue    []*pendingRecord
	leading  bool
	expected int           // mints announced by expect and not yet arrived
	wake     chan struct{} // cap 1: the queue or expected changed
}

func newGroupCommit(db *bolt.DB) *groupCommit {
	return &groupCommit{db: db, maxWait: recordMaxWait, wake: make(chan struct{}, 1)}
}

// expect announces a write to come; the returned func withdraws the
// announcement (call it exactly once, before the write or instead of it).
func (g *groupCommit) expect() func() {
	g.mu.Lock()
	g.expected++
	g.mu.Unlock()
	return g.withdraw
}

func (g *groupCommit) withdraw() {
	g.mu.Lock()
	g.expected--
	g.mu.Unlock()
	g.signal()
}

func (g *groupCommit) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// do commits write durably, together with the writes of concurrent
// callers, and returns its result: write's own error (nothing of it
// committed, the others unaffected), or the commit's.
func (g *groupCommit) do(write func(*bolt.Tx) error) error {
	p := &pendingRecord{write: write, arrived: time.Now(), done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, p)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		g.signal()
	}
	for {
		if lead {
			g.lead()
		}
		err := <-p.done
		if !errors.Is(err, errLead) {
			return err
		}
		lead = true
	}
}

// lead waits for company, commits the queue and passes the lead on.
func (g *groupCommit) lead() {
	var timer *time.Timer
	g.mu.Lock()
	for g.expected > 0 && len(g.queue) < recordMaxBatch {
		wait := time.Until(g.queue[0].arrived.Add(g.maxWait))
		if wait <= 0 {
			break
		}
		g.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-g.wake:
		case <-timer.C:
		}
		g.mu.Lock()
	}
	n := min(len(g.queue), recordMaxBatch)
	batch := append([]*pendingRecord(nil), g.queue[:n]...)
	g.queue = append(g.queue[:0], g.queue[n:]...)
	g.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	g.commit(batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead
	} else {
		g.leading = false
	}
	g.mu.Unlock()
}

// commit runs batch in one transaction. A write that fails rolls the
// transaction back; it gets its error and the others are committed
// without it.
func (g *groupCommit) commit(batch []*pendingRecord) {
	for len(batch) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, p := range batch {
				if err := safely(p.write, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, p := range batch {
				p.done <- err
			}
			return
		}
		batch[failed].done <- err
		batch = append(batch[:failed], batch[failed+1:]...)
	}
}

// safely runs write, turning a panic into its error, so that one write's
// bug cannot strand the callers queued behind it.
func safely(write func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("boltstore: write panicked: %v", p)
		}
	}()
	return write(tx)
}
