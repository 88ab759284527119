// Package burstconn wraps a connection so that when data is waiting, one
// read from the network takes in up to Size bytes, into a pooled buffer held
// only while some of it is unread.
//
// The gateway reads model servers through net/http, whose per-connection
// read buffer is kept small because every open stream holds one (thousands
// of streams wait on slow models). With a small buffer, a fast model's burst
// costs one system call per buffer-full; through a burst Conn it costs one
// or two. A connection waiting for its model holds no pooled buffer: the
// wait happens in a read into the caller's own buffer, and only a read that
// filled it (so more may be waiting) is followed by a burst read, which
// never waits.
package burstconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// Size is the most one burst read takes in.
const Size = 32 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, Size); return &b }}

// Conn is a net.Conn whose reads take in bursts while data is waiting. Like
// any net.Conn it may be read by one goroutine at a time; Write, Close and
// the deadlines pass through.
type Conn struct {
	net.Conn
	raw  syscall.RawConn // nil: reads pass through unchanged
	buf  *[]byte         // nil while nothing is buffered
	r, w int             // unread bytes are (*buf)[r:w]
	full bool            // the last read filled its buffer: more may be waiting
}

// New wraps c. A connection that does not expose its descriptor
// (syscall.Conn) is read as is.
func New(c net.Conn) *Conn {
	bc := &Conn{Conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			bc.raw = raw
		}
	}
	return bc
}

// Read returns buffered bytes if there are any. Otherwise, if the last read
// filled its buffer, it first tries one burst read that does not wait; and
// if that finds nothing, it reads into p, waiting for the server.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf == nil && c.full && c.raw != nil && len(p) < Size {
		c.burst()
	}
	if c.buf != nil {
		n := copy(p, (*c.buf)[c.r:c.w])
		c.r += n
		if c.r == c.w {
			c.release()
		}
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.full = n == len(p)
	return n, err
}

// burst reads what is waiting, up to Size bytes, without waiting for more.
// It keeps the buffer only if it got something; errors and end of input are
// left for the next ordinary read to report.
func (c *Conn) burst() {
	c.full = false
	buf := pool.Get().(*[]byte)
	n := 0
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			var rerr error
			n, rerr = syscall.Read(int(fd), *buf)
			if !errors.Is(rerr, syscall.EINTR) {
				return true // data, EAGAIN, EOF or an error: never wait here
			}
		}
	})
	if err != nil || n <= 0 {
		pool.Put(buf)
		return
	}
	c.buf, c.r, c.w = buf, 0, n
	c.full = n == Size
}

func (c *Conn) release() {
	pool.Put(c.buf)
	c.buf, c.r, c.w = nil, 0, 0
}

// Buffered is how many bytes a burst read took in that no Read has
// returned yet. A connection kept idle between HTTP exchanges must hold
// none: bytes there arrived unasked.
func (c *Conn) Buffered() int { return c.w - c.r }

// NetConn returns the wrapped connection (as tls.Conn does), for callers
// that need its socket.
func (c *Conn) NetConn() net.Conn { return c.Conn }
