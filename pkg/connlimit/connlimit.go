// Package connlimit bounds what one client address can hold on a server
// before it has authenticated: a listener wrapper caps its concurrent
// connections at accept time, before any TLS or HTTP/2 work, and Key names
// the address a client is limited under (also for per-address limits
// elsewhere, such as failed authentications).
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Key returns the key a client address is limited under: its IP for IPv4,
// its /64 for IPv6 (one host usually holds a whole /64), from an "ip:port"
// address as net.Addr.String and http.Request.RemoteAddr give it. Anything
// else (a bufconn or unix address) is returned unchanged.
func Key(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// Listener accepts at most perAddr concurrent connections from each client
// address (Key); a connection over the cap is closed at once and Accept
// goes on to the next. Memory is one map entry per address with an open
// connection, so it is bounded by the number of open connections (bound
// them too, e.g. with netutil.LimitListener around this one).
type Listener struct {
	net.Listener
	perAddr int

	mu     sync.Mutex
	open   map[string]int
	refuse atomic.Uint64
}

// New wraps l. perAddr <= 0 means no per-address cap (l is still wrapped,
// so Refused reads 0).
func New(l net.Listener, perAddr int) *Listener {
	return &Listener{Listener: l, perAddr: perAddr, open: make(map[string]int)}
}

// Accept returns the next connection within its address's cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.perAddr <= 0 {
			return c, nil
		}
		key := Key(c.RemoteAddr().String())
		l.mu.Lock()
		if l.open[key] >= l.perAddr {
			l.mu.Unlock()
			l.refuse.Add(1)
			_ = c.Close()
			continue
		}
		l.open[key]++
		l.mu.Unlock()
		return &conn{Conn: c, release: func() { l.release(key) }}, nil
	}
}

func (l *Listener) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// Refused is how many connections were closed for being over their cap.
func (l *Listener) Refused() uint64 { return l.refuse.Load() }

// Open is how many connections address key holds now.
func (l *Listener) Open(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[key]
}

type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its place, once.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
