package completion

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// errClientNotReading ends a stream whose caller stopped reading.
var errClientNotReading = errors.New("client is not reading the stream")

// relay decouples reading the model from writing to the caller. The adapter
// appends deltas to a bounded buffer; a sender goroutine writes them out.
// While the caller keeps up, each delta goes out on its own; when the caller
// lags, pending deltas are coalesced (fewer writes, same answer): text runs
// are joined, consecutive fragments of one tool call are merged, and text
// and tool calls keep their order (a send carries text, then the tool-call
// fragments that followed it). When the buffer is full the adapter waits, which stops reading the
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
	send        func(adapter.Delta) error
	maxBuffered int
	sendTimeout time.Duration
	// inline is how many more bytes may be sent on the emitting goroutine,
	// with no sender goroutine in between, while nothing is queued: the
	// budget of a transport whose send cannot block until that much is
	// written (see inlineSendBytes). Zero: every delta goes through the
	// sender.
	inline int

	mu      sync.Mutex
	pending []byte       // queued text
	calls   []queuedCall // queued tool-call fragments, each placed in the text
	size    int          // bytes queued: text and tool-call fields
	spare   []byte
	spareC  []queuedCall
	running bool          // a sender goroutine is active
	err     error         // a send failed; every later call reports it
	space   chan struct{} // the sender took the buffer (emitters may append)
	idle    chan struct{} // the sender exited (buffer drained or failed)
}

// queuedCall is a tool-call fragment that follows the first at bytes of the
// queued text.
type queuedCall struct {
	at int
	c  adapter.ToolCallDelta
}

func callSize(c adapter.ToolCallDelta) int { return len(c.ID) + len(c.Name) + len(c.Arguments) }

// inlineSendBytes is the inline budget of a gRPC stream. grpc-go's Send
// blocks only once a stream has 64 KiB (its write quota) queued and not yet
// written to the connection; a stream that has sent less than that in all
// cannot block, so its first 16 KiB (a whole typical answer) go out on the
// goroutine that read them from the model: no goroutine start and no
// hand-off per delta, and the first token reaches the caller one hop
// sooner. The relay's bounds apply from there on.
const inlineSendBytes = 16 << 10

// perMessageOverhead is what each message, and each tool-call fragment in
// it, is charged against the inline budget beyond its bytes: gRPC's 5-byte
// message header and the protobuf fields' tags and lengths, rounded up.
const perMessageOverhead = 16

func newRelay(send func(adapter.Delta) error, maxBuffered int, sendTimeout time.Duration) *relay {
	return &relay{send: send, maxBuffered: maxBuffered, sendTimeout: sendTimeout,
		space: make(chan struct{}, 1), idle: make(chan struct{}, 1)}
}

// emit queues d for the caller. It blocks while the buffer is full and
// fails if the caller made no progress for sendTimeout.
func (r *relay) emit(ctx context.Context, d adapter.Delta) error {
	n := len(d.Text)
	for _, c := range d.ToolCalls {
		n += callSize(c)
	}
	var timer *time.Timer
	for {
		r.mu.Lock()
		if r.err != nil {
			err := r.err
			r.mu.Unlock()
			return err
		}
		if cost := n + perMessageOverhead*(1+len(d.ToolCalls)); !r.running && r.size == 0 && cost <= r.inline {
			r.inline -= cost
			r.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			if err := r.send(d); err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return err
			}
			return nil
		}
		if r.size == 0 || r.size+n <= r.maxBuffered {
			r.pending = append(r.pending, d.Text...)
			r.size += n
			if d.ToolCalls != nil {
				r.queueCalls(d.ToolCalls)
			}
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

// queueCalls queues tool-call fragments after the queued text, merging a
// continuation (no id, no name) into the fragment of the same call queued
// just before it with no text in between.
func (r *relay) queueCalls(calls []adapter.ToolCallDelta) {
	at := len(r.pending)
	for _, c := range calls {
		if k := len(r.calls) - 1; k >= 0 && r.calls[k].at == at && r.calls[k].c.Index == c.Index && c.ID == "" && c.Name == "" {
			r.calls[k].c.Arguments += c.Arguments
			continue
		}
		r.calls = append(r.calls, queuedCall{at: at, c: c})
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

// run writes pending deltas until the buffer is empty or a send fails (a
// send also fails once the handler returned, which ends the stream and
// unblocks a stuck write), then exits.
func (r *relay) run() {
	for {
		r.mu.Lock()
		if len(r.pending) == 0 && len(r.calls) == 0 {
			r.running = false
			r.mu.Unlock()
			signal(r.idle)
			return
		}
		text := string(r.pending)
		calls := r.calls
		r.pending, r.spare = r.spare[:0], r.pending
		clear(r.spareC) // drop the strings of fragments sent before
		r.calls, r.spareC = r.spareC[:0], r.calls
		r.size = 0
		r.mu.Unlock()
		signal(r.space)
		if err := r.sendAll(text, calls); err != nil {
			r.mu.Lock()
			r.err = err
			r.pending = r.pending[:0]
			r.calls = r.calls[:0]
			r.size = 0
			r.running = false
			r.mu.Unlock()
			signal(r.idle)
			return
		}
	}
}

// sendAll writes text with the tool-call fragments placed in it: each send
// carries the text up to a group of fragments, then the group.
func (r *relay) sendAll(text string, calls []queuedCall) error {
	pos := 0
	for i := 0; i < len(calls); {
		at, j := calls[i].at, i
		group := make([]adapter.ToolCallDelta, 0, len(calls)-i)
		for ; j < len(calls) && calls[j].at == at; j++ {
			group = append(group, calls[j].c)
		}
		if err := r.send(adapter.Delta{Text: text[pos:at], ToolCalls: group}); err != nil {
			return err
		}
		pos, i = at, j
	}
	if pos < len(text) {
		return r.send(adapter.Delta{Text: text[pos:]})
	}
	return nil
}

// signal wakes one waiter without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
