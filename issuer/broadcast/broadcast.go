// Package broadcast fans one changing value out to many watchers. Each
// watcher has a one-slot mailbox that only says "something changed"; it then
// reads the latest value. Publishing therefore never blocks and costs one
// non-blocking send per watcher, and a slow watcher skips intermediate
// values but always ends on the latest one.
package broadcast

import "sync"

// Hub holds the latest value of type T and its revision.
type Hub[T any] struct {
	mu   sync.Mutex
	rev  uint64
	val  T
	subs map[*Sub[T]]struct{}
}

// Sub is one watcher's subscription.
type Sub[T any] struct {
	hub *Hub[T]
	c   chan struct{}
}

// Publish sets the value at revision rev and wakes every watcher. A revision
// not above the current one is ignored, so racing publishers cannot move
// watchers backwards.
func (h *Hub[T]) Publish(rev uint64, v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev <= h.rev && h.rev != 0 {
		return
	}
	h.rev, h.val = rev, v
	for s := range h.subs {
		select {
		case s.c <- struct{}{}:
		default: // already notified; it will read the latest value
		}
	}
}

// Current returns the latest revision and value (0 and the zero value before
// the first Publish).
func (h *Hub[T]) Current() (uint64, T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev, h.val
}

// Subscribe registers a watcher. Call Close when done.
func (h *Hub[T]) Subscribe() *Sub[T] {
	s := &Sub[T]{hub: h, c: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[*Sub[T]]struct{}{}
	}
	h.subs[s] = struct{}{}
	return s
}

// Watchers returns the number of open subscriptions.
func (h *Hub[T]) Watchers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// C receives after every Publish since the last receive (coalesced).
func (s *Sub[T]) C() <-chan struct{} { return s.c }

// Close unregisters the watcher. Safe to call more than once.
func (s *Sub[T]) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	delete(s.hub.subs, s)
}
