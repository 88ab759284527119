package h1

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// scriptConn is a connection whose server answers the request with fixed
// bytes, then ends the stream; what the client writes is discarded. Like a
// real server it answers only once asked (net/http's transport refuses an
// answer that comes first).
type scriptConn struct {
	r       *bytes.Reader
	written chan struct{}
	once    sync.Once
}

func newScriptConn(answer []byte) *scriptConn {
	return &scriptConn{r: bytes.NewReader(answer), written: make(chan struct{})}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	<-c.written
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.once.Do(func() { close(c.written) })
	return len(p), nil
}

func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// outcome is what a caller can observe of one exchange (err only says why
// it failed: the two transports word their errors differently). With
// mixed, the body is read as a relay reads it: what is already buffered
// first (ReadBuffered), waiting (Read) only when nothing is, in reads of
// varying sizes.
func outcome(rt http.RoundTripper, mixed bool) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://model.test/v1/chat/completions", strings.NewReader("{}"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "error", err
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if b, ok := resp.Body.(*body); ok && mixed {
		r = &relayReader{b: b}
	}
	body, err := io.ReadAll(io.LimitReader(r, 1<<20))
	return fmt.Sprintf("%d %v %q body-error=%v", resp.StatusCode, resp.Header, body, err != nil), err
}

// The response parser is net/http's; what this transport adds (framing
// the exchange, skipping 1xx, bounding the head, ending the body) must not
// change what a caller sees: any answer reads the same through both.
func FuzzResponseLikeNetHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\nbusy",
		"HTTP/1.0 200 OK\r\n\r\nunframed",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 5) + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1 \r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"garbage",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		if bytes.Contains(bytes.ToLower(answer), []byte("gzip")) {
			return // net/http decompresses what it asked for; this transport asks for none
		}
		dial := func(context.Context, string, string) (net.Conn, error) {
			return newScriptConn(answer), nil
		}
		ref := &http.Transport{DialContext: dial, DisableKeepAlives: true, DisableCompression: true}
		ours := New(Config{Dial: dial})
		want, werr := outcome(ref, false)
		got, gerr := outcome(ours, false)
		mixed, merr := outcome(New(Config{Dial: dial}), true)
		if strings.HasPrefix(want, "101 ") {
			// net/http hands a 101 over for the caller to upgrade; nothing
			// here asked for one, so it is refused.
			want = "error"
		}
		if got != want || mixed != want {
			t.Fatalf("answer %q:\n h1:       %s (%v)\n h1 mixed: %s (%v)\n net/http: %s (%v)", answer, got, gerr, mixed, merr, want, werr)
		}
	})
}

// relayReader reads buffered bytes first and waits only when there are
// none, in reads of 1, 7, 64 and 4096 bytes by turns.
type relayReader struct {
	b    *body
	turn int
}

func (r *relayReader) Read(p []byte) (int, error) {
	r.turn++
	if size := []int{1, 7, 64, 4096}[r.turn%4]; len(p) > size {
		p = p[:size]
	}
	n, err := r.b.ReadBuffered(p)
	if n > 0 || err != nil {
		return n, err
	}
	return r.b.Read(p)
}
