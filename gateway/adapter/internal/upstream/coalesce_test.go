package upstream

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

func text(s string) adapter.Delta { return adapter.Delta{Text: s} }

func TestCoalescer(t *testing.T) {
	errGone := errors.New("caller gone")
	call := func(s, args string) adapter.Delta {
		return adapter.Delta{Text: s, ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: args}}}
	}
	tests := []struct {
		name    string
		batches [][]adapter.Delta // deltas emitted between two flushes
		failAt  int               // emit fails on this call (1-based; 0: never)
		want    []adapter.Delta   // what reached emit
		wantErr error
	}{
		{name: "one text per read goes on as is", batches: [][]adapter.Delta{{text("a")}, {text("b")}}, want: []adapter.Delta{text("a"), text("b")}},
		{name: "texts of one read are joined", batches: [][]adapter.Delta{{text("a"), text("b"), text("c")}, {text("d")}}, want: []adapter.Delta{text("abc"), text("d")}},
		{name: "empty texts are dropped", batches: [][]adapter.Delta{{text(""), text("a"), text("")}, {text("")}, {text(""), text("")}}, want: []adapter.Delta{text("a")}},
		{name: "a tool call goes on at once after the text before it", batches: [][]adapter.Delta{{text("a"), text("b"), call("c", "{"), text("d"), call("", "}")}},
			want: []adapter.Delta{call("abc", "{"), call("d", "}")}},
		{name: "a failed emit is sticky", batches: [][]adapter.Delta{{text("a")}, {text("b")}, {text("c")}}, failAt: 1, want: []adapter.Delta{text("a")}, wantErr: errGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []adapter.Delta
			c := &Coalescer{emit: func(d adapter.Delta) error {
				got = append(got, d)
				if len(got) == tt.failAt {
					return errGone
				}
				return nil
			}}
			var err error
			for _, b := range tt.batches {
				for _, d := range b {
					if e := c.Emit(d); e != nil {
						err = e
					}
				}
				if e := c.Flush(); e != nil {
					err = e
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("emitted %+v, want %+v", got, tt.want)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCoalescerFinish(t *testing.T) {
	errGone, errUpstream := errors.New("caller gone"), errors.New("upstream")
	var got []adapter.Delta
	c := &Coalescer{emit: func(d adapter.Delta) error { got = append(got, d); return nil }}
	_ = c.Emit(text("kept"))
	if _, err := c.Finish(adapter.Result{}, errUpstream); err != errUpstream {
		t.Errorf("Finish error %v, want the decoder's", err)
	}
	if !reflect.DeepEqual(got, []adapter.Delta{text("kept")}) {
		t.Errorf("text queued before a failure: emitted %+v, want it delivered", got)
	}
	c = &Coalescer{emit: func(adapter.Delta) error { return errGone }}
	_ = c.Emit(text("x"))
	_ = c.Flush()
	if _, err := c.Finish(adapter.Result{Finish: adapter.FinishStop}, errUpstream); err != errGone {
		t.Errorf("Finish error %v, want the emit error", err)
	}
}

func TestCoalescerSingleTextDoesNotAllocate(t *testing.T) {
	c := &Coalescer{emit: func(adapter.Delta) error { return nil }}
	d := text(string([]byte("token")))
	if n := testing.AllocsPerRun(100, func() {
		_ = c.Emit(d)
		_ = c.Flush()
	}); n != 0 {
		t.Errorf("Emit+Flush of one text: %v allocations, want 0", n)
	}
}

// scriptedBody has some bytes already received (ReadBuffered) and more
// that only a waiting Read returns; it records the order of events.
type scriptedBody struct {
	buffered, later []string
	log             *[]string
}

func (b *scriptedBody) ReadBuffered(p []byte) (int, error) {
	if len(b.buffered) == 0 {
		return 0, nil
	}
	n := copy(p, b.buffered[0])
	b.buffered = b.buffered[1:]
	*b.log = append(*b.log, "buffered")
	return n, nil
}

func (b *scriptedBody) Read(p []byte) (int, error) {
	*b.log = append(*b.log, "wait")
	if len(b.later) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.later[0])
	b.buffered, b.later = b.later[1:2], b.later[2:]
	return n, nil
}

func (b *scriptedBody) Close() error { return nil }

// Text queued from bytes already received stays queued while more of
// them are read, and goes on, joined, before the first read that may wait
// on the model: never later.
func TestResponseFlushesOnlyBeforeAWait(t *testing.T) {
	var log []string
	body := &scriptedBody{buffered: []string{"a", "b"}, later: []string{"c", "d"}, log: &log}
	r := &Response{body: body, max: 1 << 20, parent: context.Background(), ctx: context.Background()}
	co := r.Coalesce(func(d adapter.Delta) error { log = append(log, "emit "+d.Text); return nil })
	buf := make([]byte, 8)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			_ = co.Emit(text(string(buf[:n])))
		}
		if err != nil {
			break
		}
	}
	_, _ = co.Finish(adapter.Result{}, nil)
	want := []string{"buffered", "buffered", "emit ab", "wait", "buffered", "emit cd", "wait"}
	if !reflect.DeepEqual(log, want) {
		t.Fatalf("events %q, want %q", log, want)
	}
}
