// Package burstconn wraps a connection so that each read from the network
// takes in up to Size bytes at once, into a pooled buffer held only while
// some of it is unread.
//
// The gateway reads model servers through net/http, whose per-connection
// read buffer is kept small because every open stream holds one (thousands
// of streams wait on slow models). With a small buffer a fast model's burst
// costs one system call per buffer-full; through a burst Conn the same burst
// costs one system call, and an idle connection still holds no more than
// net/http's own buffer.
package burstconn

import (
	"net"
	"sync"
)

// Size is the most one read from the network takes in.
const Size = 32 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, Size); return &b }}

// Conn is a net.Conn whose reads go through a pooled burst buffer. Like any
// net.Conn it may be read by one goroutine at a time; Write, Close and the
// deadlines pass through.
type Conn struct {
	net.Conn
	buf  *[]byte // nil while nothing is buffered
	r, w int     // unread bytes are (*buf)[r:w]
	err  error   // returned once the buffered bytes are read
}

// New wraps c.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// Read returns buffered bytes if there are any; otherwise it reads up to
// Size bytes from the connection into a pooled buffer first. A read as large
// as Size goes to the connection directly.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf == nil {
		if len(p) >= Size {
			return c.Conn.Read(p)
		}
		c.buf = pool.Get().(*[]byte)
		n, err := c.Conn.Read(*c.buf)
		if n <= 0 {
			c.release()
			return 0, err
		}
		c.r, c.w, c.err = 0, n, err
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		c.release()
		if c.err != nil {
			err := c.err
			c.err = nil
			return n, err
		}
	}
	return n, nil
}

// Buffered is the number of bytes read from the network and not yet
// returned by Read.
func (c *Conn) Buffered() int { return c.w - c.r }

func (c *Conn) release() {
	if c.buf != nil {
		pool.Put(c.buf)
		c.buf = nil
	}
	c.r, c.w = 0, 0
}
