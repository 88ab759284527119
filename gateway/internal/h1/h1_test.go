package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/gateway/internal/burstconn"
)

func newTransport(fallback http.RoundTripper) *Transport {
	var d net.Dialer
	return New(Config{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return burstconn.New(c), nil
		},
		Fallback:       fallback,
		ReadBufferSize: 2 << 10,
	})
}

// Both transports must answer alike: each case runs against net/http's
// Transport (the reference) and this one.
func TestBehavesLikeNetHTTP(t *testing.T) {
	longHeader := strings.Repeat("h", 8<<10)
	chunk := "data: " + strings.Repeat("x", 300) + "\n\n"
	cases := []struct {
		name    string
		handler http.HandlerFunc
		body    string
		header  http.Header
		check   func(t *testing.T, resp *http.Response, got string)
	}{
		{
			name:   "streamed SSE body, request body and headers delivered",
			body:   strings.Repeat("b", 10<<10+7),
			header: http.Header{"Authorization": {"Bearer k"}, "X-Multi": {"a", "b"}},
			handler: func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("X-Got", fmt.Sprintf("%d %s %s %v %s", len(b), r.Method, r.URL.RequestURI(), r.Header["X-Multi"], r.Header.Get("Authorization")))
				w.Header().Set("X-Long", longHeader)
				w.Header().Set("Content-Type", "text/event-stream")
				for range 50 {
					_, _ = io.WriteString(w, chunk)
					w.(http.Flusher).Flush()
				}
			},
			check: func(t *testing.T, resp *http.Response, got string) {
				if want := fmt.Sprintf("%d POST /v1/chat?x=1 [a b] Bearer k", 10<<10+7); resp.Header.Get("X-Got") != want {
					t.Errorf("server saw %q, want %q", resp.Header.Get("X-Got"), want)
				}
				if resp.Header.Get("X-Long") != longHeader {
					t.Errorf("long header: %d bytes", len(resp.Header.Get("X-Long")))
				}
				if got != strings.Repeat(chunk, 50) {
					t.Errorf("body: %d bytes, want %d", len(got), 50*len(chunk))
				}
			},
		},
		{
			name: "error status with a JSON body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "3")
				http.Error(w, `{"error":"busy"}`, http.StatusTooManyRequests)
			},
			check: func(t *testing.T, resp *http.Response, got string) {
				if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || got != "{\"error\":\"busy\"}\n" {
					t.Errorf("got %d %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), got)
				}
			},
		},
		{
			name:    "no content",
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
			check: func(t *testing.T, resp *http.Response, got string) {
				if resp.StatusCode != 204 || got != "" {
					t.Errorf("got %d %q", resp.StatusCode, got)
				}
			},
		},
		{
			name: "informational response skipped",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</x>")
				w.WriteHeader(http.StatusEarlyHints)
				_, _ = io.WriteString(w, "final")
			},
			check: func(t *testing.T, resp *http.Response, got string) {
				if resp.StatusCode != 200 || got != "final" {
					t.Errorf("got %d %q", resp.StatusCode, got)
				}
			},
		},
	}
	transports := map[string]func() http.RoundTripper{
		"net/http": func() http.RoundTripper { return &http.Transport{} },
		"h1":       func() http.RoundTripper { return newTransport(nil) },
	}
	for _, tc := range cases {
		for name, mk := range transports {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				srv := httptest.NewServer(tc.handler)
				defer srv.Close()
				tr := mk()
				defer tr.(interface{ CloseIdleConnections() }).CloseIdleConnections()
				for round := range 2 { // the second round runs on a kept connection
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat?x=1", strings.NewReader(tc.body))
					for k, v := range tc.header {
						req.Header[k] = v
					}
					resp, err := (&http.Client{Transport: tr}).Do(req)
					if err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					got, err := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if err != nil {
						t.Fatalf("round %d: body: %v", round, err)
					}
					tc.check(t, resp, string(got))
				}
			})
		}
	}
}

// countingListener counts the connections a server accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func newCountingServer(t *testing.T, h http.Handler) (*httptest.Server, *countingListener) {
	srv := httptest.NewUnstartedServer(h)
	cl := &countingListener{Listener: srv.Listener}
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cl
}

func get(t *testing.T, tr http.RoundTripper, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestKeepsAndReusesConnections(t *testing.T) {
	srv, cl := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	for range 20 {
		if _, body := get(t, tr, srv.URL); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	if n := cl.n.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections, want 1", n)
	}
}

// The point of the package: an open stream costs no goroutine of its own.
func TestOpenStreamsStartNoGoroutines(t *testing.T) {
	release := make(chan struct{})
	url, _ := scripted(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n")
			<-release
		}
	})
	defer close(release)
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	before := runtime.NumGoroutine()
	var bodies []io.ReadCloser
	const streams = 20
	for range streams {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 9)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	// The scripted server runs one goroutine per connection; the client none.
	if got := runtime.NumGoroutine() - before; got > streams {
		t.Fatalf("%d open streams added %d goroutines, want at most %d (the server's)", streams, got, streams)
	}
	for _, b := range bodies {
		_ = b.Close()
	}
}

// scripted is a raw TCP server that answers each connection with fn.
func scripted(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) (url string, accepted *atomic.Int32) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + lis.Addr().String(), accepted
}

// readRequest reads one request and its body; false at end of input.
func readRequest(br *bufio.Reader) bool {
	req, err := http.ReadRequest(br)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	return true
}

func TestServerClosingAKeptConnectionIsNoticed(t *testing.T) {
	url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		// then close, as a server's keep-alive timeout does
	})
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	get(t, tr, url)
	time.Sleep(50 * time.Millisecond) // the server's close arrives
	if _, body := get(t, tr, url); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the closed one not reused)", n)
	}
}

func TestUnsolicitedBytesRetireTheConnection(t *testing.T) {
	url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
		for readRequest(br) {
			// A second response nobody asked for follows the first.
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"+
				"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
		}
	})
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	for range 3 {
		if _, body := get(t, tr, url); body != "ok" {
			t.Fatalf("body %q: a stray response was taken for an answer", body)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3 (none reused)", n)
	}
}

func TestConnectionCloseAndUnframedBodiesAreNotReused(t *testing.T) {
	for _, answer := range []string{
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\n\r\nok", // read to end of stream
		"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	} {
		url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
			if readRequest(br) {
				_, _ = io.WriteString(c, answer)
			}
		})
		tr := newTransport(nil)
		for range 2 {
			if _, body := get(t, tr, url); body != "ok" {
				t.Fatalf("%q: body %q", answer, body)
			}
		}
		if n := accepted.Load(); n != 2 {
			t.Fatalf("%q: %d connections, want 2", answer, n)
		}
		tr.CloseIdleConnections()
	}
}

func TestBadInputFailsClosed(t *testing.T) {
	url, _ := scripted(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr := New(Config{Dial: (&net.Dialer{}).DialContext, MaxResponseHeaderBytes: 16 << 10})
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("oversized response head: err = %v, want ErrHeaderTooLarge", err)
	}

	for _, h := range []http.Header{
		{"X-Evil": {"a\r\nInjected: 1"}},
		{"Bad Name": {"v"}},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		req.Header = h
		if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header") {
			t.Fatalf("header %v: err = %v, want an invalid header error", h, err)
		}
	}

	req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	req.ContentLength = 10 // longer than the body
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("short body: no error")
	}
	req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	req.ContentLength = 1 // shorter than the body
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("long body: no error")
	}

	// Nothing else takes https without a fallback.
	req, _ = http.NewRequest(http.MethodPost, "https://127.0.0.1:1", strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "no fallback") {
		t.Fatalf("https without fallback: err = %v", err)
	}
}

type recordingRT struct{ urls []string }

func (r *recordingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.urls = append(r.urls, req.URL.String())
	return &http.Response{StatusCode: 200, Body: http.NoBody, Request: req}, nil
}

func TestFallbackTakesWhatItCannotDoExactly(t *testing.T) {
	fb := &recordingRT{}
	tr := newTransport(fb)
	unknownLength, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/u", io.NopCloser(strings.NewReader("x")))
	expect, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/e", strings.NewReader("x"))
	expect.Header.Set("Expect", "100-continue")
	tls, _ := http.NewRequest(http.MethodPost, "https://127.0.0.1:1/t", strings.NewReader("x"))
	for _, req := range []*http.Request{unknownLength, expect, tls} {
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(fb.urls, " "); got != "http://127.0.0.1:1/u http://127.0.0.1:1/e https://127.0.0.1:1/t" {
		t.Fatalf("fallback took %q", got)
	}
}

// Ending an exchange before its body's end, by its context or by closing
// the body, unblocks a waiting read and closes the connection.
func TestEndingEarlyClosesTheConnection(t *testing.T) {
	for _, byCancel := range []bool{true, false} {
		serverSawClose := make(chan struct{})
		url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
			if !readRequest(br) {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			_, _ = io.Copy(io.Discard, c) // until the client closes
			close(serverSawClose)
		})
		tr := newTransport(nil)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader("{}"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("first chunk %q, %v", buf, err)
		}
		if byCancel {
			time.AfterFunc(20*time.Millisecond, cancel)
			start := time.Now()
			if _, err = resp.Body.Read(buf); !errors.Is(err, context.Canceled) {
				t.Fatalf("blocked read after cancel: err = %v, want context.Canceled", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("cancel took %v", d)
			}
		}
		_ = resp.Body.Close()
		select {
		case <-serverSawClose:
		case <-time.After(5 * time.Second):
			t.Fatalf("cancel %v: the connection stayed open", byCancel)
		}
		if n := accepted.Load(); n != 1 {
			t.Fatalf("accepted %d", n)
		}
		cancel()
		tr.CloseIdleConnections()
	}
}

func TestIdleConnectionsAreReapedAndBounded(t *testing.T) {
	srv, cl := newCountingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	tr := New(Config{Dial: (&net.Dialer{}).DialContext, IdleTimeout: 50 * time.Millisecond, MaxIdlePerHost: 2})
	// Three streams at once, then all finished: only two are kept.
	var bodies []io.ReadCloser
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	for _, b := range bodies {
		_, _ = io.Copy(io.Discard, b)
		_ = b.Close()
	}
	idle := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		n := 0
		for _, s := range tr.idle {
			n += len(s)
		}
		return n
	}
	if n := idle(); n != 2 {
		t.Fatalf("%d idle connections kept, want 2 (MaxIdlePerHost)", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for idle() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections still kept after IdleTimeout", idle())
		}
		time.Sleep(10 * time.Millisecond)
	}
	get(t, tr, srv.URL)
	if n := cl.n.Load(); n != 4 {
		t.Fatalf("%d connections, want 4 (a new one after the reaping)", n)
	}
	tr.CloseIdleConnections()
}

func TestWriteBodyOnceForLargeBodies(t *testing.T) {
	big := bytes.Repeat([]byte("z"), maxPooledBuf*3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if !bytes.Equal(b, big) {
			http.Error(w, "body differs", 400)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(big))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// ReadBuffered hands out what has arrived and never waits: a relay uses it
// to tell "more of the answer is here" from "the next read waits".
func TestReadBufferedNeverWaits(t *testing.T) {
	more := make(chan struct{})
	url, _ := scripted(t, func(c net.Conn, br *bufio.Reader) {
		if !readRequest(br) {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
		<-more
		_, _ = io.WriteString(c, "lo\r\n3\r\n!!!\r\n0\r\n\r\n")
	})
	tr := newTransport(nil)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b := resp.Body.(*body)
	buf := make([]byte, 64)
	var got []byte
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) { // "hel" may still be in flight
		n, err := b.ReadBuffered(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "hel" {
		t.Fatalf("buffered %q, want %q", got, "hel")
	}
	start := time.Now()
	if n, err := b.ReadBuffered(buf); n != 0 || err != nil {
		t.Fatalf("ReadBuffered with nothing buffered = %d, %v; want 0, nil", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ReadBuffered waited %v", d)
	}
	close(more)
	rest, err := io.ReadAll(b)
	if err != nil || string(rest) != "lo!!!" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if n, err := b.ReadBuffered(buf); n != 0 || err != io.EOF {
		t.Fatalf("ReadBuffered after the end = %d, %v; want 0, EOF", n, err)
	}
}

// A relay stops reading at the model's end marker and closes the body; the
// last chunk came with the marker, so the connection is kept, whether the
// marker was read with Read or ReadBuffered.
func TestClosingAtTheEndMarkerKeepsTheConnection(t *testing.T) {
	const marker = "data: [DONE]\n\n"
	for _, buffered := range []bool{false, true} {
		url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
			for readRequest(br) {
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(marker), marker)
			}
		})
		tr := newTransport(nil)
		for range 3 {
			resp := post(t, tr, url)
			buf := make([]byte, len(marker))
			got := 0
			var err error
			for got < len(buf) {
				var n int
				if buffered {
					n, err = resp.Body.(*body).ReadBuffered(buf[got:])
				}
				if n == 0 && err == nil {
					n, err = resp.Body.Read(buf[got:])
				}
				got += n
				if err != nil && got < len(buf) {
					t.Fatal(err)
				}
			}
			_ = resp.Body.Close()
		}
		if n := accepted.Load(); n != 1 {
			t.Errorf("ReadBuffered %v: 3 answers over %d connections, want 1", buffered, n)
		}
		tr.CloseIdleConnections()
	}
}

// Informational answers are bounded only by the head size, as in net/http:
// a server sending them without end is cut off there.
func TestEndlessInformationalAnswersAreCutOff(t *testing.T) {
	url, _ := scripted(t, func(c net.Conn, br *bufio.Reader) {
		if readRequest(br) {
			for {
				if _, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"); err != nil {
					return
				}
			}
		}
	})
	tr := New(Config{Dial: (&net.Dialer{}).DialContext, MaxResponseHeaderBytes: 64 << 10})
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("endless 103s: err = %v, want ErrHeaderTooLarge", err)
	}
}

// post sends an empty JSON body to url through tr.
func post(t *testing.T, tr *Transport, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Most streaming servers send the final chunk in a write of its own after
// the answer's end marker, where an adapter stops reading and closes the
// body: Close waits briefly (on its own goroutine) for a short rest so the
// connection is kept; a long rest, or one that does not come, closes it.
func TestClosingBeforeALateFinalChunk(t *testing.T) {
	const marker = "data: [DONE]\n\n"
	tests := []struct {
		name      string
		rest      string // sent after a pause, before the final chunk
		pause     time.Duration
		wantConns int32
	}{
		{"final chunk soon after: kept", "", 5 * time.Millisecond, 1},
		{"short rest soon after: kept", "7\r\n: ping\n\r\n", 5 * time.Millisecond, 1},
		{"rest longer than drainMax: closed", fmt.Sprintf("%x\r\n%s\r\n", drainMax+1, strings.Repeat("x", drainMax+1)), 5 * time.Millisecond, 3},
		{"final chunk later than drainWait: closed", "", drainWait + 100*time.Millisecond, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, accepted := scripted(t, func(c net.Conn, br *bufio.Reader) {
				for readRequest(br) {
					_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(marker), marker)
					time.Sleep(tt.pause)
					if _, err := io.WriteString(c, tt.rest+"0\r\n\r\n"); err != nil {
						return
					}
				}
			})
			tr := newTransport(nil)
			defer tr.CloseIdleConnections()
			for range 3 {
				resp := post(t, tr, url)
				buf := make([]byte, len(marker))
				if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != marker {
					t.Fatalf("read %q, %v", buf, err)
				}
				start := time.Now()
				_ = resp.Body.Close()
				if d := time.Since(start); d > drainWait/2 {
					t.Fatalf("Close waited %v", d)
				}
				// The next request takes a kept connection only once the drain
				// is over: give it its bound.
				time.Sleep(drainWait + 150*time.Millisecond)
			}
			if n := accepted.Load(); n != tt.wantConns {
				t.Errorf("3 answers over %d connections, want %d", n, tt.wantConns)
			}
		})
	}
}
