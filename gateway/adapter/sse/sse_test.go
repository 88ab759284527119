package sse_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/airlock-dev/airlock/gateway/adapter/sse"
)

type ev struct {
	Name, Data string
	Error      bool
}

// collect decodes everything from r, returning events and the final error.
func collect(r io.Reader, max int) ([]ev, error) {
	d := sse.NewDecoder(r, max)
	var out []ev
	for {
		e, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, ev{string(e.Name), string(e.Data), e.Error})
	}
}

func TestDecoder(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []ev
		wantErr error
	}{
		{"lf framing", "data: a\n\ndata: b\n\n", []ev{{Data: "a"}, {Data: "b"}}, io.EOF},
		{"crlf framing", "data: a\r\n\r\ndata: b\r\n\r\n", []ev{{Data: "a"}, {Data: "b"}}, io.EOF},
		{"lone cr framing", "data: a\r\rdata: b\r\r", []ev{{Data: "a"}, {Data: "b"}}, io.EOF},
		{"mixed terminators", "data: a\r\n\ndata: b\r\r\n", []ev{{Data: "a"}, {Data: "b"}}, io.EOF},
		{"only one leading space is stripped", "data:  two\n\ndata:none\n\n", []ev{{Data: " two"}, {Data: "none"}}, io.EOF},
		{"multi-line data joined with newline", "data: a\ndata:\ndata: b\n\n", []ev{{Data: "a\n\nb"}}, io.EOF},
		{"comments are skipped, also inside an event", ": keep-alive\n\n: ping\ndata: x\n:\n\n", []ev{{Data: "x"}}, io.EOF},
		{"event name kept", "event: message_start\ndata: {}\n\n", []ev{{Name: "message_start", Data: "{}"}}, io.EOF},
		{"name does not leak into the next event", "event: ping\ndata: 1\n\ndata: 2\n\n", []ev{{Name: "ping", Data: "1"}, {Data: "2"}}, io.EOF},
		{"id and retry carry no content", "id: 7\nretry: 10\ndata: x\n\n", []ev{{Data: "x"}}, io.EOF},
		{"event without data is not dispatched", "event: ping\n\nid: 3\n\ndata: x\n\n", []ev{{Data: "x"}}, io.EOF},
		{"empty data line dispatches empty data", "data:\n\n", []ev{{Data: ""}}, io.EOF},
		{"field without colon is a name with empty value", "data\n\n", []ev{{Data: ""}}, io.EOF},
		{"unknown fields ignored", "foo: bar\ndata: x\n\n", []ev{{Data: "x"}}, io.EOF},
		{"llama.cpp error field line is an error event", "data: a\n\nerror: {\"code\":500}\n\n", []ev{{Data: "a"}, {Data: `{"code":500}`, Error: true}}, io.EOF},
		{"leading BOM is dropped", "\xEF\xBB\xBFdata: x\n\n", []ev{{Data: "x"}}, io.EOF},
		{"unterminated event at EOF is discarded", "data: a\n\ndata: b\n", []ev{{Data: "a"}}, sse.ErrTruncated},
		{"half line at EOF is discarded", "data: a\n\ndata: {\"x", []ev{{Data: "a"}}, sse.ErrTruncated},
		{"trailing comment is not truncation", "data: a\n\n: bye\n", []ev{{Data: "a"}}, io.EOF},
		{"empty body", "", nil, io.EOF},
		{"multibyte text intact", "data: 🌫️ 東京\n\n", []ev{{Data: "🌫️ 東京"}}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range readers(tt.in) {
				got, err := collect(r.r, 0)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("%s: err = %v, want %v", r.name, err, tt.wantErr)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s: events = %+v, want %+v", r.name, got, tt.want)
				}
			}
		})
	}
}

type namedReader struct {
	name string
	r    io.Reader
}

// readers delivers s whole, one byte at a time, and in random pieces.
func readers(s string) []namedReader {
	out := []namedReader{
		{"whole", strings.NewReader(s)},
		{"one byte", iotest.OneByteReader(strings.NewReader(s))},
		{"data+EOF", iotest.DataErrReader(strings.NewReader(s))},
	}
	for seed := uint64(1); seed <= 3; seed++ {
		out = append(out, namedReader{fmt.Sprintf("random %d", seed), &randomReader{s: s, r: rand.New(rand.NewPCG(seed, 1))}})
	}
	return out
}

type randomReader struct {
	s string
	r *rand.Rand
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := min(len(p), len(r.s), 1+r.r.IntN(7))
	copy(p, r.s[:n])
	r.s = r.s[n:]
	return n, nil
}

func TestDecoderRejectsOversizedEvents(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"one endless line", "data: " + strings.Repeat("x", 1<<20)},
		{"one long terminated line", "data: " + strings.Repeat("x", 200) + "\n\n"},
		{"many data lines adding up", strings.Repeat("data: "+strings.Repeat("x", 60)+"\n", 10) + "\n"},
		{"one long comment", ":" + strings.Repeat("x", 1<<16) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := collect(strings.NewReader(tt.in), 128)
			if !errors.Is(err, sse.ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestDecoderAcceptsEventAtTheBound(t *testing.T) {
	data := strings.Repeat("y", 128)
	got, err := collect(strings.NewReader("data:"+data[:123]+"\ndata:"+data[:4]+"\n\n"), 128)
	if err != io.EOF || len(got) != 1 || len(got[0].Data) != 128 {
		t.Fatalf("got %d events (%v), want one 128-byte event", len(got), err)
	}
}

// countingReader serves an endless line and records how much was read.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

func TestDecoderStopsReadingAnEndlessLineNearTheBound(t *testing.T) {
	r := &countingReader{}
	_, err := sse.NewDecoder(r, 1000).Next()
	if !errors.Is(err, sse.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if r.n > 1002 {
		t.Fatalf("read %d bytes of an endless line with a 1000-byte bound", r.n)
	}
}

func TestDecoderPassesReadErrorsThrough(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := collect(io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom)), 0)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the read error", err)
	}
}

func TestLineReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error
	}{
		{"lines", "{\"a\":1}\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}, io.EOF},
		{"crlf dropped", "a\r\nb\r\n", []string{"a", "b"}, io.EOF},
		{"lone cr is not a terminator", "a\rb\n", []string{"a\rb"}, io.EOF},
		{"blank lines returned", "a\n\nb\n", []string{"a", "", "b"}, io.EOF},
		{"final fragment is incomplete", "a\n{\"done\":tr", []string{"a"}, sse.ErrTruncated},
		{"empty", "", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range readers(tt.in) {
				lr := sse.NewLineReader(r.r, 0)
				var got []string
				var err error
				for {
					var l []byte
					if l, err = lr.Next(); err != nil {
						break
					}
					got = append(got, string(l))
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("%s: err = %v, want %v", r.name, err, tt.wantErr)
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("%s: lines = %q, want %q", r.name, got, tt.want)
				}
			}
		})
	}
}

func TestLineReaderRejectsOversizedLines(t *testing.T) {
	r := &countingReader{}
	_, err := sse.NewLineReader(r, 500).Next()
	if !errors.Is(err, sse.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if r.n > 502 {
		t.Fatalf("read %d bytes with a 500-byte bound", r.n)
	}
}
