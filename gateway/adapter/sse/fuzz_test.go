package sse_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/airlock-dev/airlock/gateway/adapter/sse"
)

// FuzzDecoder checks that decoding never depends on how the input is split
// and that no event exceeds the bound. Seeds live in testdata/fuzz.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("data: a\r\n\r\n: c\r\nevent: x\ndata:b\rdata: c\n\nerror: {}\n\n"), uint64(1))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		const max = 64
		whole, werr := collect(bytes.NewReader(in), max)
		bytewise, berr := collect(iotest.OneByteReader(bytes.NewReader(in)), max)
		random, rerr := collect(&randomReader{s: string(in), r: rand.New(rand.NewPCG(seed, 2))}, max)
		if fmt.Sprint(whole) != fmt.Sprint(bytewise) || fmt.Sprint(whole) != fmt.Sprint(random) {
			t.Fatalf("split changed events:\nwhole %+v\nbytes %+v\nrandom %+v", whole, bytewise, random)
		}
		if !sameErr(werr, berr) || !sameErr(werr, rerr) {
			t.Fatalf("split changed the end: %v / %v / %v", werr, berr, rerr)
		}
		for _, e := range whole {
			if len(e.Data) > max {
				t.Fatalf("event of %d bytes passed a %d-byte bound", len(e.Data), max)
			}
		}
	})
}

// FuzzLineReader checks the NDJSON reader the same way.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("{\"a\":1}\r\n\n{\"done\":true}\n{\"x"), uint64(1))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		const max = 64
		read := func(r io.Reader) (string, error) {
			lr := sse.NewLineReader(r, max)
			var out []string
			for {
				l, err := lr.Next()
				if err != nil {
					return fmt.Sprintf("%q", out), err
				}
				if len(l) > max || bytes.IndexByte(l, '\n') >= 0 {
					t.Fatalf("bad line %q", l)
				}
				out = append(out, string(l))
			}
		}
		a, aerr := read(bytes.NewReader(in))
		b, berr := read(iotest.OneByteReader(bytes.NewReader(in)))
		c, cerr := read(&randomReader{s: string(in), r: rand.New(rand.NewPCG(seed, 3))})
		if a != b || a != c || !sameErr(aerr, berr) || !sameErr(aerr, cerr) {
			t.Fatalf("split changed lines: %s %v / %s %v / %s %v", a, aerr, b, berr, c, cerr)
		}
	})
}

func sameErr(a, b error) bool {
	return errors.Is(a, b) || a.Error() == b.Error()
}
