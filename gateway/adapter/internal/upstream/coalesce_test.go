package upstream

import (
	"errors"
	"slices"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

func TestCoalescer(t *testing.T) {
	errGone := errors.New("caller gone")
	tests := []struct {
		name    string
		batches [][]string // texts emitted between two flushes
		failAt  int        // emit fails on this call (1-based; 0: never)
		want    []string   // what reached emit
		wantErr error
	}{
		{name: "one text per read goes on as is", batches: [][]string{{"a"}, {"b"}}, want: []string{"a", "b"}},
		{name: "texts of one read are joined", batches: [][]string{{"a", "b", "c"}, {"d"}}, want: []string{"abc", "d"}},
		{name: "empty texts are dropped", batches: [][]string{{"", "a", ""}, {""}, {"", ""}}, want: []string{"a"}},
		{name: "a failed emit is sticky", batches: [][]string{{"a"}, {"b"}, {"c"}}, failAt: 1, want: []string{"a"}, wantErr: errGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			c := &Coalescer{emit: func(s string) error {
				got = append(got, s)
				if len(got) == tt.failAt {
					return errGone
				}
				return nil
			}}
			var err error
			for _, b := range tt.batches {
				for _, text := range b {
					if e := c.Emit(text); e != nil {
						err = e
					}
				}
				if e := c.Flush(); e != nil {
					err = e
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("emitted %q, want %q", got, tt.want)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestCoalescerFinish(t *testing.T) {
	errGone, errUpstream := errors.New("caller gone"), errors.New("upstream")
	var got []string
	c := &Coalescer{emit: func(s string) error { got = append(got, s); return nil }}
	_ = c.Emit("kept")
	if _, err := c.Finish(adapter.Result{}, errUpstream); err != errUpstream {
		t.Errorf("Finish error %v, want the decoder's", err)
	}
	if !slices.Equal(got, []string{"kept"}) {
		t.Errorf("text queued before a failure: emitted %q, want it delivered", got)
	}
	c = &Coalescer{emit: func(string) error { return errGone }}
	_ = c.Emit("x")
	_ = c.Flush()
	if _, err := c.Finish(adapter.Result{Finish: adapter.FinishStop}, errUpstream); err != errGone {
		t.Errorf("Finish error %v, want the emit error", err)
	}
}

func TestCoalescerSingleTextDoesNotAllocate(t *testing.T) {
	c := &Coalescer{emit: func(string) error { return nil }}
	text := string([]byte("token"))
	if n := testing.AllocsPerRun(100, func() {
		_ = c.Emit(text)
		_ = c.Flush()
	}); n != 0 {
		t.Errorf("Emit+Flush of one text: %v allocations, want 0", n)
	}
}
