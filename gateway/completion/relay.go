package completion

import (
	"context"
	"errors"
	"sync"
	"time"
)

// errClientNotReading ends a stream whose caller stopped reading.
var errClientNotReading = errors.New("client is not reading the stream")

// relay decouples reading the model from writing to the caller. The adapter
// appends deltas to a bounded buffer; one sender goroutine writes them out.
// While the caller keeps up, each delta goes out on its own; when the caller
// lags, pending deltas are coalesced into one message (fewer writes, same
// text). When the buffer is full the adapter waits, which stops reading the
// model (backpressure); if the caller makes no progress for sendTimeout the
// stream ends with errClientNotReading, so a stalled client cannot hold a
// stream, its per-user slot and an upstream connection forever.
type relay struct {
	send        func(string) error
	maxBuffered int
	sendTimeout time.Duration

	mu      sync.Mutex
	pending []byte
	spare   []byte
	closed  bool
	err     error         // the sender's failure, if any
	wake    chan struct{} // sender: there is text or the relay closed
	space   chan struct{} // emitter: the sender took the buffer
	done    chan struct{} // sender exited
}

func newRelay(send func(string) error, maxBuffered int, sendTimeout time.Duration) *relay {
	r := &relay{send: send, maxBuffered: maxBuffered, sendTimeout: sendTimeout,
		wake: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
	go r.run()
	return r
}

// emit queues text for the caller. It blocks while the buffer is full and
// fails if the caller made no progress for sendTimeout.
func (r *relay) emit(ctx context.Context, text string) error {
	var timer *time.Timer
	for {
		r.mu.Lock()
		if r.err != nil {
			err := r.err
			r.mu.Unlock()
			return err
		}
		if len(r.pending) == 0 || len(r.pending)+len(text) <= r.maxBuffered {
			r.pending = append(r.pending, text...)
			r.mu.Unlock()
			select {
			case r.wake <- struct{}{}:
			default:
			}
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		r.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(r.sendTimeout)
			defer timer.Stop()
		}
		select {
		case <-r.space:
		case <-r.done:
		case <-timer.C:
			return errClientNotReading
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finish waits until everything queued was written, or the caller stalled
// for sendTimeout, or ctx ended. After a nil return the caller's goroutine
// may use the stream again (the sender has exited).
func (r *relay) finish(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(r.sendTimeout)
	defer t.Stop()
	select {
	case <-r.done:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.err
	case <-t.C:
		return errClientNotReading
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the sender goroutine. It exits when the relay is closed and
// drained, or when a send fails (including because the handler returned,
// which ends the stream and unblocks a stuck send).
func (r *relay) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		for len(r.pending) == 0 && !r.closed {
			r.mu.Unlock()
			<-r.wake
			r.mu.Lock()
		}
		if len(r.pending) == 0 && r.closed {
			r.mu.Unlock()
			return
		}
		text := string(r.pending)
		r.pending, r.spare = r.spare[:0], r.pending
		r.mu.Unlock()
		select {
		case r.space <- struct{}{}:
		default:
		}
		if err := r.send(text); err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
	}
}
