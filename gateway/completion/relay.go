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
// appends deltas to a bounded buffer; a sender goroutine writes them out.
// While the caller keeps up, each delta goes out on its own; when the caller
// lags, pending deltas are coalesced into one message (fewer writes, same
// text). When the buffer is full the adapter waits, which stops reading the
// model (backpressure); if the caller makes no progress for sendTimeout the
// stream ends with errClientNotReading, so a stalled client cannot hold a
// stream, its per-user slot and an upstream connection forever.
//
// The sender goroutine lives only while there is text to write: a stream
// waiting on a slow model holds no goroutine for it (this matters with
// thousands of open streams). A transport whose sends cannot block for a
// while gives the relay an inline budget: until it is spent, deltas are
// sent on the emitting goroutine when nothing is queued.
type relay struct {
	send        func(string) error
	maxBuffered int
	sendTimeout time.Duration
	// inline is how many more bytes may be sent on the emitting goroutine,
	// with no sender goroutine in between, while nothing is queued: the
	// budget of a transport whose send cannot block until that much is
	// written (see inlineSendBytes). Zero: every delta goes through the
	// sender.
	inline int

	mu      sync.Mutex
	pending []byte
	spare   []byte
	running bool          // a sender goroutine is active
	err     error         // a send failed; every later call reports it
	space   chan struct{} // the sender took the buffer (emitters may append)
	idle    chan struct{} // the sender exited (buffer drained or failed)
}

// inlineSendBytes is the inline budget of a gRPC stream. grpc-go's Send
// blocks only once a stream has 64 KiB (its write quota) queued and not yet
// written to the connection; a stream that has sent less than that in all
// cannot block, so its first 16 KiB (a whole typical answer) go out on the
// goroutine that read them from the model: no goroutine start and no
// hand-off per delta, and the first token reaches the caller one hop
// sooner. The relay's bounds apply from there on.
const inlineSendBytes = 16 << 10

// perMessageOverhead is what each message is charged against the inline
// budget beyond its text: gRPC's 5-byte message header and the protobuf
// field's tag and length, rounded up.
const perMessageOverhead = 16

func newRelay(send func(string) error, maxBuffered int, sendTimeout time.Duration) *relay {
	return &relay{send: send, maxBuffered: maxBuffered, sendTimeout: sendTimeout,
		space: make(chan struct{}, 1), idle: make(chan struct{}, 1)}
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
		if !r.running && len(r.pending) == 0 && len(text)+perMessageOverhead <= r.inline {
			r.inline -= len(text) + perMessageOverhead
			r.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			if err := r.send(text); err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return err
			}
			return nil
		}
		if len(r.pending) == 0 || len(r.pending)+len(text) <= r.maxBuffered {
			r.pending = append(r.pending, text...)
			if !r.running {
				r.running = true
				go r.run()
			}
			r.mu.Unlock()
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
		case <-r.idle:
		case <-timer.C:
			return errClientNotReading
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finish waits until everything queued was written (or a send failed), or
// the caller stalled for sendTimeout, or ctx ended. After a nil return no
// sender is running, so the caller's goroutine may use the stream again.
func (r *relay) finish(ctx context.Context) error {
	t := time.NewTimer(r.sendTimeout)
	defer t.Stop()
	for {
		r.mu.Lock()
		running, err := r.running, r.err
		r.mu.Unlock()
		if !running {
			return err
		}
		select {
		case <-r.idle:
		case <-t.C:
			return errClientNotReading
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run writes pending text until the buffer is empty or a send fails (a
// send also fails once the handler returned, which ends the stream and
// unblocks a stuck write), then exits.
func (r *relay) run() {
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.running = false
			r.mu.Unlock()
			signal(r.idle)
			return
		}
		text := string(r.pending)
		r.pending, r.spare = r.spare[:0], r.pending
		r.mu.Unlock()
		signal(r.space)
		if err := r.send(text); err != nil {
			r.mu.Lock()
			r.err = err
			r.pending = r.pending[:0]
			r.running = false
			r.mu.Unlock()
			signal(r.idle)
			return
		}
	}
}

// signal wakes one waiter without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
