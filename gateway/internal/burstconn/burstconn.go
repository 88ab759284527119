// Package burstconn wraps a connection so that each read from the network
// takes in everything that has arrived, up to Size bytes, into a pooled
// buffer held only while some of it is unread.
//
// The gateway reads model servers through a small per-connection buffer
// (bufio, 2 KiB), because every open stream holds one (thousands of streams
// wait on slow models). Read into that buffer directly, a fast model's burst
// costs one system call per buffer-full. Through a Conn it costs one: the
// wait for data happens in the netpoller holding no buffer, and the read
// that follows takes a pooled Size buffer, reads all that is there, and
// hands it out in the caller's pieces.
package burstconn

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Size is the most one burst read takes in.
const Size = 32 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, Size); return &b }}

// Conn is a net.Conn whose reads take in all that has arrived. Like any
// net.Conn it may be read by one goroutine at a time; Write, Close and the
// deadlines pass through.
type Conn struct {
	net.Conn
	raw  syscall.RawConn // nil: reads pass through unchanged
	buf  *[]byte         // nil while nothing is buffered
	r, w int             // unread bytes are (*buf)[r:w]
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

// Read returns buffered bytes if there are any. Otherwise it waits until
// the connection is readable and reads all that has arrived (a read of Size
// or more goes straight into p).
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf != nil {
		n := copy(p, (*c.buf)[c.r:c.w])
		c.r += n
		if c.r == c.w {
			c.release()
		}
		return n, nil
	}
	if c.raw == nil || len(p) >= Size {
		return c.Conn.Read(p)
	}
	return c.readAll(p)
}

// readAll is one read(2) of up to Size bytes once data is there. A buffer
// is taken from the pool only for an attempt at the socket, and put back
// when the attempt finds nothing, so a stream waiting on its model holds
// none.
func (c *Conn) readAll(p []byte) (int, error) {
	var (
		buf  *[]byte
		n    int
		rerr error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		if buf == nil {
			buf = pool.Get().(*[]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), *buf)
			if !errors.Is(rerr, syscall.EINTR) {
				break
			}
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			pool.Put(buf)
			buf = nil
			return false // wait in the netpoller for the next data
		}
		return true
	})
	if err == nil && rerr != nil {
		err = os.NewSyscallError("read", rerr)
	}
	if err != nil || n <= 0 {
		if buf != nil {
			pool.Put(buf)
		}
		if err == nil {
			return 0, io.EOF
		}
		return 0, c.readError(err)
	}
	m := copy(p, (*buf)[:n])
	if m == n {
		pool.Put(buf)
	} else {
		c.buf, c.r, c.w = buf, m, n
	}
	return m, nil
}

// readError reports err as net.Conn.Read would: a *net.OpError for "read"
// (the deadline and a closed connection come from RawConn as "raw-read").
func (c *Conn) readError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		cp := *oe
		cp.Op = "read"
		return &cp
	}
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
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
