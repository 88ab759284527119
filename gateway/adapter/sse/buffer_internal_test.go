package sse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// An open stream holds its line buffer: for the chunks model servers send
// (a few hundred bytes per line) it stays at initialBuf, and a longer line
// grows it instead of failing.
func TestLineBufferStaysSmallForTypicalChunks(t *testing.T) {
	chunk := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"` + strings.Repeat("x", 200) + `"},"logprobs":null,"finish_reason":null}]}`
	if len(chunk) >= initialBuf {
		t.Fatalf("test chunk of %d bytes does not fit the %d-byte buffer", len(chunk), initialBuf)
	}
	for name, r := range map[string]io.Reader{
		"whole":    strings.NewReader(strings.Repeat(chunk+"\n\n", 200)),
		"halves":   iotest.HalfReader(strings.NewReader(strings.Repeat(chunk+"\n\n", 200))),
		"one byte": iotest.OneByteReader(strings.NewReader(strings.Repeat(chunk+"\n\n", 20))),
	} {
		d := NewDecoder(r, 0)
		n := 0
		for {
			e, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if string(e.Data) != chunk[len("data: "):] {
				t.Fatalf("%s: event %d = %q", name, n, e.Data)
			}
			n++
		}
		if len(d.lr.buf) != initialBuf {
			t.Fatalf("%s: buffer grew to %d bytes for %d-byte lines", name, len(d.lr.buf), len(chunk))
		}
	}
	long := "data: " + strings.Repeat("y", 3*initialBuf)
	d := NewDecoder(strings.NewReader(long+"\n\n"), 0)
	e, err := d.Next()
	if err != nil || string(e.Data) != long[len("data: "):] {
		t.Fatalf("a line longer than the initial buffer: %d bytes, %v", len(e.Data), err)
	}
}

// firstCR finds the first '\r' or '\n' exactly as bytes.IndexAny does.
func FuzzFirstCR(f *testing.F) {
	for _, s := range []string{"", "\n", "\r", "a\r\nb", "ab\ncd\r", "data: x\r", strings.Repeat("x", 100) + "\n\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := firstCR(in, bytes.IndexByte(in, '\n')), bytes.IndexAny(in, "\r\n"); got != want {
			t.Fatalf("firstCR(%q) = %d, want %d", in, got, want)
		}
	})
}
