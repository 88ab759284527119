package burstconn

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// script is a net.Conn whose reads return the given pieces in turn (each
// read returns at most one piece), then err.
type script struct {
	net.Conn
	pieces [][]byte
	err    error
	reads  int
}

func (s *script) Read(p []byte) (int, error) {
	s.reads++
	if len(s.pieces) == 0 {
		return 0, s.err
	}
	n := copy(p, s.pieces[0])
	if n < len(s.pieces[0]) {
		s.pieces[0] = s.pieces[0][n:]
		return n, nil
	}
	s.pieces = s.pieces[1:]
	if len(s.pieces) == 0 && s.err != nil {
		return n, s.err // data and error together, as a Conn may return them
	}
	return n, nil
}

func TestReadsABurstOnceAndHandsItOutInPieces(t *testing.T) {
	burst := bytes.Repeat([]byte("data: {\"x\":1}\n\n"), 1000) // 15 KB
	s := &script{pieces: [][]byte{burst}, err: io.EOF}
	c := New(s)
	var got []byte
	p := make([]byte, 2048) // net/http's read buffer in the gateway
	for {
		n, err := c.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, burst) {
		t.Fatalf("read %d bytes, want the %d written", len(got), len(burst))
	}
	if s.reads != 1 {
		t.Errorf("%d reads from the connection for one burst, want 1", s.reads)
	}
	if c.buf != nil || c.Buffered() != 0 {
		t.Error("buffer still held after everything was read")
	}
}

func TestErrorsComeAfterTheData(t *testing.T) {
	boom := errors.New("reset")
	c := New(&script{pieces: [][]byte{[]byte("abc")}, err: boom})
	p := make([]byte, 2)
	if n, err := c.Read(p); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v; want 2 bytes and no error", n, err)
	}
	if n, err := c.Read(p); n != 1 || err != boom {
		t.Fatalf("Read = %d, %v; want the last byte and the error", n, err)
	}
	if n, err := c.Read(p); n != 0 || err != boom {
		t.Fatalf("Read = %d, %v; want the error again from the connection", n, err)
	}
}

func TestLargeReadsBypassTheBuffer(t *testing.T) {
	s := &script{pieces: [][]byte{bytes.Repeat([]byte{'x'}, Size)}, err: io.EOF}
	c := New(s)
	p := make([]byte, Size)
	if n, err := c.Read(p); n != Size || err != io.EOF {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if c.buf != nil {
		t.Error("a read of Size bytes took a pooled buffer")
	}
}

func TestSteadyReadsDoNotAllocate(t *testing.T) {
	piece := bytes.Repeat([]byte{'y'}, 4096)
	s := &script{}
	c := New(s)
	p := make([]byte, 1024)
	backing := make([][]byte, 1)
	allocs := testing.AllocsPerRun(200, func() {
		backing[0] = piece
		s.pieces = backing
		for range 4 {
			if _, err := c.Read(p); err != nil {
				t.Fatal(err)
			}
		}
	})
	// AllocsPerRun truncates the average: under the race detector
	// sync.Pool drops a quarter of what is put back, which stays below 1.
	if allocs > 0 {
		t.Errorf("%v allocations per burst, want 0 (the buffer is pooled)", allocs)
	}
}

// FuzzSameBytes checks that whatever the pieces the connection returns and
// the sizes the caller reads with, the caller reads exactly the bytes sent.
func FuzzSameBytes(f *testing.F) {
	f.Add([]byte("hello, world"), uint64(1))
	f.Add(bytes.Repeat([]byte("0123456789"), 5000), uint64(7))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		s := &script{err: io.EOF}
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(3*Size))
			s.pieces = append(s.pieces, rest[:n])
			rest = rest[n:]
		}
		c := New(s)
		var got []byte
		for {
			p := make([]byte, 1+rng.IntN(Size+100))
			n, err := c.Read(p)
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("Read returned 0 bytes and no error")
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want %d", len(got), len(data))
		}
	})
}
