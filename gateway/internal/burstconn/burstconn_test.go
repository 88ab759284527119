package burstconn

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, the client end
// wrapped.
func pair(t testing.TB) (*Conn, net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	bc := New(c)
	if bc.raw == nil {
		t.Fatal("a TCP connection should expose its descriptor")
	}
	return bc, s
}

// waitQueued waits until n bytes can be read from c without blocking, i.e.
// the whole burst has arrived in the socket.
func waitQueued(t *testing.T, c *Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var queued int
		_ = c.raw.Control(func(fd uintptr) { queued = inq(fd) })
		if queued >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%d bytes never arrived", n)
}

func TestOneReadTakesInAllThatArrived(t *testing.T) {
	c, s := pair(t)
	burst := bytes.Repeat([]byte("data: {\"x\":1}\n\n"), 1000) // 15 KB
	if _, err := s.Write(burst); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, c, len(burst))
	p := make([]byte, 2048) // the gateway's read buffer
	n, err := c.Read(p)
	if err != nil || n != len(p) {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	if c.Buffered() != len(burst)-n {
		t.Fatalf("after the first read %d bytes buffered, want the rest of the burst (%d)", c.Buffered(), len(burst)-n)
	}
	got := append([]byte(nil), p[:n]...)
	for len(got) < len(burst) {
		n, err := c.Read(p)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, burst) {
		t.Fatal("bytes differ from those sent")
	}
	if c.buf != nil {
		t.Fatal("a drained connection still holds a buffer")
	}
	// A read that returns all it took in keeps no pooled buffer.
	if _, err := s.Write([]byte("next")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(p); err != nil || string(p[:n]) != "next" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	if c.buf != nil {
		t.Fatal("a short read kept a pooled buffer")
	}
}

// The read deadline and Close end a waiting read with net.Conn's errors.
func TestAWaitingReadEndsLikeNetConns(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 16))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" || !oe.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %#v, want a read timeout", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 16)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed connection = %v, want net.ErrClosed", err)
	}
}

// A reset connection is a read error, not the end of input.
func TestAResetIsAnError(t *testing.T) {
	c, s := pair(t)
	if err := s.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	s.Close() // RST
	_, err := c.Read(make([]byte, 16))
	if err == nil || err == io.EOF || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read after a reset = %v, want ECONNRESET", err)
	}
}

func TestEndOfInputAfterABurst(t *testing.T) {
	c, s := pair(t)
	data := bytes.Repeat([]byte{'z'}, 5000)
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got, err := io.ReadAll(io.LimitReader(readerFunc(func(p []byte) (int, error) { return c.Read(p[:min(len(p), 1024)]) }), 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, want %d", len(got), len(data))
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestConnWithoutDescriptorPassesThrough(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(a)
	go func() { _, _ = b.Write([]byte("hello")) }()
	p := make([]byte, 5)
	if n, err := c.Read(p); err != nil || string(p[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
}

// FuzzSameBytes checks that whatever pieces the server writes and whatever
// sizes the caller reads with, the caller reads exactly the bytes sent.
func FuzzSameBytes(f *testing.F) {
	f.Add([]byte("hello, world"), uint64(1))
	f.Add(bytes.Repeat([]byte("0123456789"), 5000), uint64(7))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		c, s := pair(t)
		var pieces [][]byte
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(3*Size))
			pieces = append(pieces, rest[:n])
			rest = rest[n:]
		}
		go func() {
			for _, p := range pieces {
				if _, err := s.Write(p); err != nil {
					return
				}
			}
			s.(*net.TCPConn).CloseWrite()
		}()
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
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want %d", len(got), len(data))
		}
	})
}
