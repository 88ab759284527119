// Package heapfloor keeps the garbage collector from running more often
// than a heap of a given size would make it run.
//
// Go sets the next collection at the live heap times (1 + GOGC/100), at
// least 4 MB. A relay's live heap is small (a few MB between bursts) while
// it allocates steadily, so with the default GOGC=100 it collects every
// second or two under load. Each cycle has stop-the-world phases and takes
// CPU from the streams that are running, and its cost shows in the time to
// first token of the streams starting during it. Start raises GOGC after
// every cycle just enough that the next goal is at least the floor. Once
// the live heap reaches half the floor, the goal it gives is the floor or
// more anyway, and the process's own GOGC applies unchanged. So the floor
// bounds the extra memory (the heap may grow to the floor before a
// collection) and leaves large heaps as they were.
package heapfloor

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// heapMinimum is the Go runtime's smallest heap goal at GOGC=100 (4 MB);
// the runtime scales it with GOGC, so a GOGC of p never gives a goal
// under heapMinimum × p/100.
const heapMinimum = 4 << 20

// Percent is the GOGC that makes the next goal about floor bytes for a live
// heap of live bytes, or base when base already reaches the floor (or is
// off: < 0). It is at most floor/heapMinimum × 100, where the runtime's
// scaled minimum alone gives the floor, so a small live heap cannot ask
// for a goal far above it.
func Percent(live, floor uint64, base int) int {
	if base < 0 || floor <= live {
		return base
	}
	p := float64(floor) * 100 / heapMinimum
	if live > 0 {
		p = math.Min(p, math.Ceil(float64(floor-live)*100/float64(live)))
	}
	return max(int(p), base)
}

// Start makes the collector keep the heap goal at floor bytes or more, and
// returns a function that stops it and restores the GOGC found at the
// start. With floor 0, or GOGC off (GOGC=off), it does nothing. It is not
// meant to run twice at once in a process.
func Start(floor uint64) (stop func()) {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if floor == 0 || base < 0 {
		return func() {}
	}
	f := &follower{floor: floor, base: base, set: base}
	f.sample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	f.adjust()
	f.arm()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.stopped.Swap(true) {
			return
		}
		debug.SetGCPercent(base)
	}
}

// follower adjusts GOGC after every collection.
type follower struct {
	floor   uint64
	base    int
	stopped atomic.Bool

	mu     sync.Mutex // adjust and stop
	set    int        // the GOGC last set
	sample []metrics.Sample
}

// sentinel is an object whose finalizer runs once per collection; it has
// a pointer so it is never placed in a tiny-allocator block, where
// finalizers are not guaranteed to run.
type sentinel struct {
	_ *int
	_ [8]byte
}

// arm allocates a sentinel that adjusts GOGC and re-arms when the next
// collection finds it unreachable.
func (f *follower) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if f.stopped.Load() {
			return
		}
		f.adjust()
		f.arm()
	})
}

// adjust sets GOGC for the live heap the last collection left.
func (f *follower) adjust() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped.Load() {
		return
	}
	metrics.Read(f.sample)
	if f.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := Percent(f.sample[0].Value.Uint64(), f.floor, f.base)
	if p != f.set {
		debug.SetGCPercent(p)
		f.set = p
	}
}
