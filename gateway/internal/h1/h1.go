// Package h1 is a plain-text HTTP/1.1 client transport that runs each
// exchange on the calling goroutine.
//
// The gateway holds one upstream connection per open stream, often for
// minutes while a model generates. net/http's Transport gives every
// connection a read loop and a write loop goroutine and hands each request
// and response between them and the caller: two goroutine stacks per open
// stream and several wake-ups per request. This transport writes the
// request, reads the response head and hands out the body on the caller's
// goroutine; an idle connection is a pooled struct, nothing more.
//
// It takes only what it can do exactly: http:// requests with a body of
// known length (or none). Everything else (https, where TLS and HTTP/2
// stay with net/http; bodies of unknown length; Expect: 100-continue;
// trailers) goes to the fallback transport. Response parsing is net/http's
// own (http.ReadResponse), with its header-size bound applied.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Config configures a Transport.
type Config struct {
	// Dial opens a connection to addr ("host:port"). Required.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Fallback takes every request this transport does not (see the
	// package doc). Nil: such requests fail.
	Fallback http.RoundTripper
	// MaxIdlePerHost bounds the idle connections kept per host:port
	// (default 256).
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle this long (default 90 s).
	IdleTimeout time.Duration
	// ReadBufferSize is each connection's read buffer (default 4 KiB).
	// It bounds no message: longer lines are read in parts, except a
	// chunk-size line, which no honest server makes that long.
	ReadBufferSize int
	// MaxResponseHeaderBytes bounds a response's status line and headers
	// (default 1 MiB).
	MaxResponseHeaderBytes int64
}

// Transport is an http.RoundTripper; see the package doc. It is safe for
// concurrent use.
type Transport struct {
	cfg Config

	mu     sync.Mutex
	idle   map[string][]*conn // per host:port, most recently used last
	reaper *time.Timer        // armed while any connection is idle
}

// New returns a Transport for cfg, with defaults filled in.
func New(cfg Config) *Transport {
	if cfg.MaxIdlePerHost <= 0 {
		cfg.MaxIdlePerHost = 256
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 90 * time.Second
	}
	if cfg.ReadBufferSize <= 0 {
		cfg.ReadBufferSize = 4 << 10
	}
	if cfg.MaxResponseHeaderBytes <= 0 {
		cfg.MaxResponseHeaderBytes = 1 << 20
	}
	return &Transport{cfg: cfg, idle: make(map[string][]*conn)}
}

// ErrHeaderTooLarge is returned for a response head (with any
// informational heads before it) over Config.MaxResponseHeaderBytes.
var ErrHeaderTooLarge = errors.New("h1: response headers too large")

// takes reports whether req is one this transport carries itself.
func takes(req *http.Request) bool {
	if req.URL == nil || req.URL.Scheme != "http" || req.URL.Opaque != "" || req.Method == http.MethodConnect {
		return false
	}
	if len(req.Trailer) > 0 || len(req.TransferEncoding) > 0 || req.Header.Get("Expect") != "" {
		return false
	}
	if req.Body != nil && req.Body != http.NoBody {
		return req.ContentLength > 0
	}
	return req.ContentLength == 0
}

// RoundTrip sends req and returns its response; the body reads from the
// connection until its end, then the connection is kept for reuse. Closing
// the body before its end closes the connection. When req's context ends,
// a blocked read or write returns and the call fails with the context's
// error.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !takes(req) {
		if t.cfg.Fallback == nil {
			closeBody(req)
			return nil, fmt.Errorf("h1: cannot send %s %s: no fallback transport", req.Method, req.URL.Scheme)
		}
		return t.cfg.Fallback.RoundTrip(req)
	}
	head, err := requestHead(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if err := readBody(req, head); err != nil {
		putBuf(head)
		return nil, err
	}
	ctx := req.Context()
	c, stop, err := t.send(ctx, canonicalAddr(req), *head)
	putBuf(head) // sent: a slow model's wait holds no request bytes
	if err != nil {
		return nil, err
	}
	return t.receive(ctx, c, stop, req)
}

// send writes the request on a kept connection or a new one. It retries
// on a new connection when a kept one fails the write: the server closed
// it as we took it, and has at most part of the request, which it cannot
// act on. stop ends the exchange's interruption by ctx.
func (t *Transport) send(ctx context.Context, key string, wire []byte) (*conn, func() bool, error) {
	for {
		c, reused, err := t.conn(ctx, key)
		if err != nil {
			return nil, nil, err
		}
		stop := context.AfterFunc(ctx, c.interrupt)
		_, err = c.nc.Write(wire)
		if err == nil {
			return c, stop, nil
		}
		stop()
		c.close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, nil, cerr
		}
		if !reused {
			return nil, nil, err
		}
	}
}

// receive reads the response head from c and hands out its body. On
// error c is closed.
func (t *Transport) receive(ctx context.Context, c *conn, stop func() bool, req *http.Request) (*http.Response, error) {
	c.lr.remaining = t.cfg.MaxResponseHeaderBytes
	resp, err := readResponse(c, req)
	c.lr.remaining = -1
	if err != nil {
		stop()
		c.close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	b := &body{t: t, c: c, ctx: ctx, stop: stop, src: resp.Body, keep: !resp.Close && !req.Close}
	if resp.ContentLength == 0 || resp.Body == http.NoBody {
		b.finish(true)
		resp.Body = http.NoBody
		return resp, nil
	}
	if len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked" {
		b.chunked = &chunked{br: c.br}
		b.src = b.chunked
	}
	resp.Body = b
	return resp, nil
}

// readResponse reads the final response head, skipping informational
// (1xx) ones as net/http does; MaxResponseHeaderBytes bounds them all
// together.
func readResponse(c *conn, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.lr.remaining == 0 {
				return nil, ErrHeaderTooLarge
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("h1: unexpected 101 Switching Protocols")
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue
		}
		return resp, nil
	}
}

// body is a response body. It returns its connection to the pool after
// reading to the end, or closes it.
type body struct {
	t       *Transport
	c       *conn
	ctx     context.Context
	src     io.Reader // net/http's body reader, or chunked
	chunked *chunked  // for a chunked body: src
	stop    func() bool
	keep    bool // the response allows reuse
	done    bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	return b.end(b.src.Read(p))
}

// ReadBuffered is Read without waiting on the network: it returns only
// body bytes already received, and (0, nil) when there are none (or the
// body is not chunked, the only framing streamed answers use), when a Read
// would wait. An empty trailer after the last chunk is read when it has
// arrived; any other is left to Read.
func (b *body) ReadBuffered(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.chunked == nil {
		return 0, nil
	}
	return b.end(b.chunked.readBuffered(p))
}

// end finishes the exchange when a read reached the end of the body or
// failed.
func (b *body) end(n int, err error) (int, error) {
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

// Close ends the body. Before its end, that closes the connection, unless
// the rest of a chunked body is short and arrives soon (drainMax, drainWait):
// streaming servers commonly send the last chunk in a write of its own after
// the answer's end marker, where the caller stops reading, and the
// connection is then kept instead of closed and dialled anew. A rest not yet
// received is awaited on a goroutine of its own, so Close never waits.
func (b *body) Close() error {
	if b.done {
		return nil
	}
	if b.chunked == nil || !b.keep {
		b.finish(false)
		return nil
	}
	b.done = true
	if !b.stop() { // the context ended: the connection is interrupted
		b.c.close()
		return nil
	}
	var scratch [512]byte
	for rest := 0; rest <= drainMax; {
		n, err := b.chunked.readBuffered(scratch[:])
		switch {
		case err == io.EOF:
			b.keepConn()
			return nil
		case err != nil:
			b.c.close()
			return nil
		case n == 0: // the rest has not arrived yet
			go b.drain(drainMax - rest)
			return nil
		}
		rest += n
	}
	b.c.close()
	return nil
}

// Bounds of what Close reads of a body's rest to keep its connection.
const (
	drainMax  = 4 << 10
	drainWait = 50 * time.Millisecond
)

// drain reads the rest of the body, at most limit bytes within drainWait, and
// keeps the connection if that reaches its end.
func (b *body) drain(limit int) {
	if b.c.nc.SetReadDeadline(time.Now().Add(drainWait)) != nil {
		b.c.close()
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(b.chunked, int64(limit)+1))
	if err == nil && n <= int64(limit) && b.c.nc.SetReadDeadline(time.Time{}) == nil {
		b.keepConn() // LimitReader hid the chunked reader's io.EOF
		return
	}
	b.c.close()
}

// keepConn returns the connection of a body read to its end to the pool,
// unless bytes follow the body.
func (b *body) keepConn() {
	if b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return
	}
	b.c.close()
}

// finish ends the exchange: a connection read to the end of a response
// that allows reuse, and that its context never interrupted, is kept.
func (b *body) finish(complete bool) {
	b.done = true
	interruptible := b.stop()
	if complete && b.keep && interruptible {
		b.keepConn()
		return
	}
	b.c.close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// canonicalAddr is req's host:port, port 80 when none is given.
func canonicalAddr(req *http.Request) string {
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(host, port)
}

// requestHead encodes req's request line and headers into a pooled buffer
// (with room for the body after them). It refuses header names and values
// that could split the message.
func requestHead(req *http.Request) (*[]byte, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if host == "" {
		return nil, errors.New("h1: request has no host")
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("h1: invalid Host %q", host)
	}
	if !validMethod(req.Method) {
		return nil, fmt.Errorf("h1: invalid method %q", req.Method)
	}
	if err := validHeaders(req.Header); err != nil {
		return nil, err
	}
	bp := getBuf()
	b := append((*bp)[:0], req.Method...)
	b = append(b, ' ')
	b = append(b, req.URL.RequestURI()...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	if _, ok := req.Header["User-Agent"]; !ok {
		b = append(b, "User-Agent: Go-http-client/1.1\r\n"...)
	}
	for k, vv := range req.Header {
		if framing(k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if req.Close {
		b = append(b, "Connection: close\r\n"...)
	}
	if req.ContentLength > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, max(req.ContentLength, 0), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	*bp = b
	return bp, nil
}

// framing reports whether header k is one the transport writes itself.
func framing(k string) bool {
	switch k {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// validHeaders refuses header names and values that could split the
// message.
func validHeaders(h http.Header) error {
	for k, vv := range h {
		if framing(k) {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1: invalid header name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("h1: invalid header value for %q", k)
			}
		}
	}
	return nil
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := range len(m) {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// readBody appends req's body (exactly ContentLength bytes) to the head
// and closes it.
func readBody(req *http.Request, head *[]byte) error {
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	defer req.Body.Close()
	n := int(req.ContentLength)
	b := *head
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	if _, err := io.ReadFull(req.Body, b[len(b):len(b)+n]); err != nil {
		return fmt.Errorf("h1: reading the request body (ContentLength %d): %w", n, err)
	}
	var extra [1]byte
	if m, _ := req.Body.Read(extra[:]); m > 0 {
		return fmt.Errorf("h1: request body longer than its ContentLength %d", n)
	}
	*head = b[:len(b)+n]
	return nil
}

// Request heads (and the bodies after them) are built in pooled buffers;
// only modest ones return to the pool.
const maxPooledBuf = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuf {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// conn is one connection to a host:port.
type conn struct {
	nc     net.Conn
	raw    syscall.RawConn // the socket, for the liveness check; nil if not exposed
	lr     *limitReader
	br     *bufio.Reader
	key    string
	idleAt time.Time
}

// interrupt unblocks the exchange's reads and writes: its context ended.
func (c *conn) interrupt() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }

func (c *conn) close() { _ = c.nc.Close() }

// limitReader bounds the bytes read from the connection while remaining is
// not negative (while a response head is read).
type limitReader struct {
	r         io.Reader
	remaining int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.remaining < 0 {
		return l.r.Read(p)
	}
	if l.remaining == 0 {
		return 0, ErrHeaderTooLarge
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.r.Read(p)
	l.remaining -= int64(n)
	return n, err
}

// conn returns a kept connection to key that is still open, or a new one.
func (t *Transport) conn(ctx context.Context, key string) (c *conn, reused bool, err error) {
	for {
		c := t.take(key)
		if c == nil {
			break
		}
		if c.alive() {
			return c, true, nil
		}
		c.close()
	}
	nc, err := t.cfg.Dial(ctx, "tcp", key)
	if err != nil {
		return nil, false, err
	}
	c = &conn{nc: nc, raw: rawConn(nc), key: key}
	c.lr = &limitReader{r: nc, remaining: -1}
	c.br = bufio.NewReaderSize(c.lr, t.cfg.ReadBufferSize)
	return c, false, nil
}

// rawConn is the socket under nc and the connections wrapping it (which
// expose what they wrap as NetConn, as tls.Conn does).
func rawConn(nc net.Conn) syscall.RawConn {
	for {
		if sc, ok := nc.(syscall.Conn); ok {
			raw, err := sc.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		}
		w, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		nc = w.NetConn()
	}
}

// alive reports whether a kept connection can carry a request: nothing
// has arrived on it since its last response (no unsolicited bytes, no end
// of stream from a server that closed it while idle).
func (c *conn) alive() bool {
	if b, ok := c.nc.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	quiet := false
	var probe [1]byte
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			quiet = errors.Is(err, syscall.EAGAIN)
			return true // never wait
		}
	})
	return err == nil && quiet
}

// take pops the most recently used idle connection to key (the reaper
// closes those idle too long).
func (t *Transport) take(key string) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	stack := t.idle[key]
	if len(stack) == 0 {
		return nil
	}
	c := stack[len(stack)-1]
	stack[len(stack)-1] = nil
	if len(stack) == 1 {
		delete(t.idle, key)
	} else {
		t.idle[key] = stack[:len(stack)-1]
	}
	return c
}

// put keeps c for reuse, or closes it if its host has enough kept.
func (t *Transport) put(c *conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	stack := t.idle[c.key]
	if len(stack) >= t.cfg.MaxIdlePerHost {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle[c.key] = append(stack, c)
	if t.reaper == nil {
		t.reaper = time.AfterFunc(t.cfg.IdleTimeout, t.reap)
	}
	t.mu.Unlock()
}

// reap closes connections idle for IdleTimeout and runs again while any
// remain idle.
func (t *Transport) reap() {
	now := time.Now()
	var expired []*conn
	t.mu.Lock()
	next := time.Duration(-1)
	for key, stack := range t.idle {
		i := 0
		for i < len(stack) && now.Sub(stack[i].idleAt) >= t.cfg.IdleTimeout {
			i++
		}
		expired = append(expired, stack[:i]...)
		if i == len(stack) {
			delete(t.idle, key)
			continue
		}
		t.idle[key] = append(stack[:0], stack[i:]...)
		clear(stack[len(stack)-i:])
		if wait := t.cfg.IdleTimeout - now.Sub(t.idle[key][0].idleAt); next < 0 || wait < next {
			next = wait
		}
	}
	if next >= 0 {
		t.reaper.Reset(next)
	} else {
		t.reaper = nil
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// CloseIdleConnections closes every kept connection (http.Client calls it).
// Connections in use are not affected.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	var all []*conn
	for _, stack := range t.idle {
		all = append(all, stack...)
	}
	clear(t.idle)
	t.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	if f, ok := t.cfg.Fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}
