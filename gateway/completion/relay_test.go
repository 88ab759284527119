package completion

import (
	"context"
	"errors"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sink records sends (their text, and the whole deltas); while gate is
// non-nil each send waits for it.
type sink struct {
	mu      sync.Mutex
	sent    []string
	deltas  []adapter.Delta
	gate    chan struct{}
	entered chan struct{}
}

func (s *sink) send(d adapter.Delta) error {
	text := d.Text
	if s.entered != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
	}
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, text)
	s.deltas = append(s.deltas, d)
	return nil
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

func TestRelayDeliversInOrder(t *testing.T) {
	s := &sink{}
	r := newRelay(s.send, 1024, time.Second)
	for _, d := range []string{"a", "b", "c"} {
		if err := r.emit(context.Background(), adapter.Delta{Text: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.all(), ""); got != "abc" {
		t.Fatalf("delivered %q, want abc", got)
	}
}

func TestRelayCoalescesWhileTheCallerLags(t *testing.T) {
	s := &sink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	r := newRelay(s.send, 1024, time.Second)
	_ = r.emit(context.Background(), adapter.Delta{Text: "first"})
	<-s.entered // the sender is stuck writing "first"
	for _, d := range []string{"x", "y", "z"} {
		if err := r.emit(context.Background(), adapter.Delta{Text: d}); err != nil {
			t.Fatal(err)
		}
	}
	close(s.gate)
	if err := r.finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.all(); len(got) != 2 || got[0] != "first" || got[1] != "xyz" {
		t.Fatalf("sends = %q, want [first xyz]", got)
	}
}

func TestRelayEndsAStalledStream(t *testing.T) {
	s := &sink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(s.gate) // in production the handler's return unblocks the send
	r := newRelay(s.send, 8, 50*time.Millisecond)
	_ = r.emit(context.Background(), adapter.Delta{Text: "12345678"})
	<-s.entered
	if err := r.emit(context.Background(), adapter.Delta{Text: "12345678"}); err != nil { // fills the buffer
		t.Fatal(err)
	}
	start := time.Now()
	err := r.emit(context.Background(), adapter.Delta{Text: "more"})
	if !errors.Is(err, errClientNotReading) {
		t.Fatalf("emit into a full buffer of a stalled caller = %v, want errClientNotReading", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > time.Second {
		t.Fatalf("gave up after %v, want about the 50ms send timeout", d)
	}
	if err := r.finish(context.Background()); !errors.Is(err, errClientNotReading) {
		t.Fatalf("finish = %v, want errClientNotReading", err)
	}
}

func TestRelayReportsSendFailure(t *testing.T) {
	boom := errors.New("stream closed")
	r := newRelay(func(adapter.Delta) error { return boom }, 1024, time.Second)
	_ = r.emit(context.Background(), adapter.Delta{Text: "a"})
	if err := r.finish(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("finish = %v, want the send error", err)
	}
	if err := r.emit(context.Background(), adapter.Delta{Text: "b"}); !errors.Is(err, boom) {
		t.Fatalf("emit after a failed send = %v, want the send error", err)
	}
}

// sent returns a send function that reports each text on a channel.
func sentChan() (func(adapter.Delta) error, chan string) {
	c := make(chan string, 16)
	return func(d adapter.Delta) error { c <- d.Text; return nil }, c
}

// BenchmarkRelayPacedBursts relays one delta per burst, each written before
// the next arrives (a paced model): the per-chunk cost of starting the
// sender. (A sender lingering for the next burst, woken through a select
// with a linger timer, measured 1.13 us of CPU per burst against 0.55 us for
// starting a goroutine per burst, so the relay starts one.)
func BenchmarkRelayPacedBursts(b *testing.B) {
	send, sent := sentChan()
	r := newRelay(send, 1024, time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := r.emit(ctx, adapter.Delta{Text: "tok"}); err != nil {
			b.Fatal(err)
		}
		<-sent
		for !settled(r) { // the sender exits, as between paced tokens
			runtime.Gosched()
		}
	}
	if err := r.finish(ctx); err != nil {
		b.Fatal(err)
	}
}

// settled reports whether r's sender has exited.
func settled(r *relay) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.running
}

func call(i int, id, name, args string) adapter.Delta {
	return adapter.Delta{ToolCalls: []adapter.ToolCallDelta{{Index: i, ID: id, Name: name, Arguments: args}}}
}

func TestRelayKeepsToolCallsInOrderWithText(t *testing.T) {
	s := &sink{entered: make(chan struct{}, 1)}
	r := newRelay(s.send, 1024, time.Second)
	in := []adapter.Delta{{Text: "a"}, call(0, "c0", "f", "{"), {Text: "b"}, call(0, "", "", "}")}
	for _, d := range in {
		if err := r.emit(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if err := r.finish(context.Background()); err != nil { // the caller keeps up
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(s.deltas, in) {
		t.Fatalf("sent %+v, want each delta on its own: %+v", s.deltas, in)
	}
}

func TestRelayMergesToolCallFragmentsWhileTheCallerLags(t *testing.T) {
	s := &sink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	r := newRelay(s.send, 1024, time.Second)
	ctx := context.Background()
	_ = r.emit(ctx, adapter.Delta{Text: "first"})
	<-s.entered // the sender is stuck writing "first"
	for _, d := range []adapter.Delta{
		{Text: "Let me "}, {Text: "check."},
		call(0, "c0", "get_weather", ""), call(0, "", "", `{"city":`), call(0, "", "", `"Paris"}`),
		call(1, "c1", "get_time", `{}`), call(1, "", "", ``),
		{Text: "Done"}, call(0, "", "", " "), // a fragment after text stays after it
	} {
		if err := r.emit(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	close(s.gate)
	if err := r.finish(ctx); err != nil {
		t.Fatal(err)
	}
	want := []adapter.Delta{
		{Text: "first"},
		{Text: "Let me check.", ToolCalls: []adapter.ToolCallDelta{
			{Index: 0, ID: "c0", Name: "get_weather", Arguments: `{"city":"Paris"}`},
			{Index: 1, ID: "c1", Name: "get_time", Arguments: `{}`},
		}},
		{Text: "Done", ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: " "}}},
	}
	if !reflect.DeepEqual(s.deltas, want) {
		t.Fatalf("sent  %+v\nwant %+v", s.deltas, want)
	}
}

func TestRelayCountsToolCallBytesTowardTheBuffer(t *testing.T) {
	s := &sink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	defer close(s.gate)
	r := newRelay(s.send, 8, 50*time.Millisecond)
	_ = r.emit(context.Background(), adapter.Delta{Text: "x"})
	<-s.entered
	if err := r.emit(context.Background(), call(0, "id", "f", "12345")); err != nil { // 8 bytes: fills the buffer
		t.Fatal(err)
	}
	if err := r.emit(context.Background(), call(0, "", "", "6")); !errors.Is(err, errClientNotReading) {
		t.Fatalf("emit of a fragment into a full buffer = %v, want errClientNotReading", err)
	}
}

// goid is the current goroutine's id, from its stack header.
func goid() string {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := strings.Fields(string(b[:n]))
	return f[1]
}

// With an inline budget, deltas go out on the emitting goroutine while the
// budget lasts and nothing is queued; then through the sender goroutine.
func TestRelaySendsInlineWithinItsBudget(t *testing.T) {
	var mu sync.Mutex
	var on []string
	send := func(adapter.Delta) error {
		mu.Lock()
		on = append(on, goid())
		mu.Unlock()
		return nil
	}
	r := newRelay(send, 1024, time.Second)
	r.inline = 2 * (4 + perMessageOverhead) // two 4-byte deltas
	me := goid()
	for _, d := range []string{"aaaa", "bbbb", "cccc"} {
		if err := r.emit(context.Background(), adapter.Delta{Text: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(on) != 3 || on[0] != me || on[1] != me || on[2] == me {
		t.Fatalf("sends ran on goroutines %v (emitter %s), want the first two inline and the third on the sender", on, me)
	}
}

// An inline send that fails ends the stream like a failed sender does.
func TestRelayInlineSendFailure(t *testing.T) {
	boom := errors.New("stream closed")
	r := newRelay(func(adapter.Delta) error { return boom }, 1024, time.Second)
	r.inline = inlineSendBytes
	if err := r.emit(context.Background(), adapter.Delta{Text: "a"}); !errors.Is(err, boom) {
		t.Fatalf("emit = %v, want the send error", err)
	}
	if err := r.emit(context.Background(), adapter.Delta{Text: "b"}); !errors.Is(err, boom) {
		t.Fatalf("emit after a failed send = %v, want the send error", err)
	}
	if err := r.finish(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("finish = %v, want the send error", err)
	}
}
