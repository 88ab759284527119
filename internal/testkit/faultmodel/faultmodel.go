// Package faultmodel is a misbehaving OpenAI-compatible model server for
// tests: on demand it stalls, resets, floods, sends garbage or answers with
// throttling and server errors, and it records what it saw of each request
// (when it started, how many bytes it wrote, when the client went away) so a
// test can prove the gateway's bounds from the model server's side.
//
// The fault is chosen by the first path segment: a model whose endpoint is
// URL(StallHeaders) = "http://<addr>/stall-headers/v1" gets that fault for
// every request, so one server can back many models at once. A request may
// override it with the X-Airlock-Fault header. It is a test double only: it
// listens on loopback and never generates language.
package faultmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is one way the server misbehaves (or not).
type Fault string

// Faults. Each is also the first path segment that selects it.
const (
	// OK streams a healthy answer of Config.Tokens words and [DONE].
	OK Fault = "ok"
	// StallHeaders accepts the request and never answers.
	StallHeaders Fault = "stall-headers"
	// StallMidStream sends Config.StallAfter content chunks, then stalls.
	StallMidStream Fault = "stall-mid"
	// ResetMidStream sends Config.StallAfter content chunks, then resets
	// the TCP connection (SO_LINGER 0: the peer sees ECONNRESET).
	ResetMidStream Fault = "reset-mid"
	// Garbage answers 200 text/event-stream with a frame that is not JSON.
	Garbage Fault = "garbage"
	// EndlessLine answers 200 and then sends one SSE line that never ends.
	EndlessLine Fault = "endless-line"
	// HugeBody answers 200 and sends SSE comment lines without end: a body
	// far larger than any bound, made of frames a decoder must skip.
	HugeBody Fault = "huge-body"
	// Endless streams valid content chunks as fast as the peer reads and
	// never finishes (slow-consumer tests watch Written stop growing).
	Endless Fault = "endless"
	// RateLimited answers 429 with Retry-After: Config.RetryAfter seconds.
	RateLimited Fault = "429"
	// ServerError answers 500.
	ServerError Fault = "500"
	// Overloaded answers 503 with Retry-After: Config.RetryAfter seconds.
	Overloaded Fault = "503"
	// EchoKey answers 401 with an error message that quotes the request's
	// Authorization header, as some servers do: a leak test's bait.
	EchoKey Fault = "echo-key"
	// Flaky cycles by request count: 1st OK, 2nd 503, 3rd OK, 4th
	// ResetMidStream, and again.
	Flaky Fault = "flaky"
)

// Faults lists every fault the server knows.
var Faults = []Fault{OK, StallHeaders, StallMidStream, ResetMidStream, Garbage, EndlessLine, HugeBody,
	Endless, RateLimited, ServerError, Overloaded, EchoKey, Flaky}

// Messages the error answers carry (tests assert on the gateway's relay).
const (
	RateLimitedMessage = "Rate limit reached for requests"
	ServerErrorMessage = "internal failure in the model server"
	OverloadedMessage  = "model server is overloaded"
)

// HeaderFault overrides the path's fault for one request.
const HeaderFault = "X-Airlock-Fault"

// Config shapes the answers. Zero fields take the defaults noted.
type Config struct {
	Tokens     int           // words in a healthy answer (8)
	Delay      time.Duration // pause before each healthy word (0)
	StallAfter int           // content chunks before a mid-stream stall or reset (2)
	RetryAfter int           // seconds in Retry-After for 429 and 503 (2)
	// MaxWrite bounds what one flooding answer (EndlessLine, HugeBody,
	// Endless) writes, so a test that forgets a bound ends anyway (1 GiB).
	MaxWrite int64
}

func (c Config) withDefaults() Config {
	if c.Tokens <= 0 {
		c.Tokens = 8
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 2
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 2
	}
	if c.MaxWrite <= 0 {
		c.MaxWrite = 1 << 30
	}
	return c
}

// Word is what every healthy and flooding content chunk carries; a healthy
// answer is Answer(n).
const Word = "fault "

// Answer is the text a healthy answer of n words streams.
func Answer(n int) string { return strings.Repeat(Word, n) }

// Record is what the server saw of one request.
type Record struct {
	Fault   Fault
	Seq     int64     // 1-based order of arrival across the server
	Start   time.Time // request arrived
	End     time.Time // handler returned
	Written int64     // response body bytes written (as far as the server knows)
	// ClientGone reports that the handler stopped because the client went
	// away (its context ended or a write failed), not by finishing.
	ClientGone bool
}

// Server is the fault server. Its zero value is not usable; call New.
type Server struct {
	cfg  Config
	quit chan struct{}
	seq  atomic.Int64
	hs   *http.Server
	addr string

	mu       sync.Mutex
	records  []Record
	changed  chan struct{} // closed and replaced on every change
	live     map[Fault]*atomic.Int64
	written  map[Fault]*atomic.Int64
	flakySeq atomic.Int64
}

// New returns a server handler with cfg; Start also listens.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg.withDefaults(), quit: make(chan struct{}), changed: make(chan struct{}),
		live: map[Fault]*atomic.Int64{}, written: map[Fault]*atomic.Int64{}}
	for _, f := range Faults {
		s.live[f], s.written[f] = new(atomic.Int64), new(atomic.Int64)
	}
	return s
}

// Start serves a new Server on an ephemeral loopback port until Close.
func Start(cfg Config) (*Server, error) {
	s := New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = l.Addr().String()
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.hs.Serve(l) }()
	return s, nil
}

// Addr is the listen address (empty for a Server from New).
func (s *Server) Addr() string { return s.addr }

// URL is the endpoint (API base, ending in /v1) of a model with fault f.
func (s *Server) URL(f Fault) string { return "http://" + s.addr + "/" + string(f) + "/v1" }

// Close releases every stalled handler and stops the server; flooding
// handlers stop at their next write.
func (s *Server) Close() error {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	if s.hs == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.hs.Shutdown(ctx); err != nil {
		return s.hs.Close()
	}
	return nil
}

// Records returns what the server saw of finished requests with fault f
// (every fault if f is empty), in order of completion.
func (s *Server) Records(f Fault) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.records {
		if f == "" || r.Fault == f {
			out = append(out, r)
		}
	}
	return out
}

// Requests counts requests with fault f that arrived, finished or not.
func (s *Server) Requests(f Fault) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.records {
		if r.Fault == f {
			n++
		}
	}
	return n + int(s.liveCount(f))
}

// Live is how many requests with fault f are being answered now.
func (s *Server) Live(f Fault) int64 { return s.liveCount(f) }

func (s *Server) liveCount(f Fault) int64 {
	if c, ok := s.live[f]; ok {
		return c.Load()
	}
	return 0
}

// Written is how many body bytes answers with fault f have written so far,
// finished or not: a test watches it to see an upstream being paused.
func (s *Server) Written(f Fault) int64 {
	if c, ok := s.written[f]; ok {
		return c.Load()
	}
	return 0
}

// WaitRecord waits until a finished request satisfies match and returns it,
// or returns ctx's error.
func (s *Server) WaitRecord(ctx context.Context, match func(Record) bool) (Record, error) {
	for {
		s.mu.Lock()
		for _, r := range s.records {
			if match(r) {
				s.mu.Unlock()
				return r, nil
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
}

func (s *Server) finish(r Record) {
	s.mu.Lock()
	s.records = append(s.records, r)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := Fault(strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0])
	if h := r.Header.Get(HeaderFault); h != "" {
		f = Fault(h)
	}
	live, ok := s.live[f]
	if !ok || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/completions") {
		http.NotFound(w, r)
		return
	}
	// Read the request first: net/http notices a client that went away
	// (and ends r.Context()) only once the body has been consumed.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 4<<20))
	live.Add(1)
	rec := Record{Fault: f, Seq: s.seq.Add(1), Start: time.Now()}
	text := strings.HasSuffix(r.URL.Path, "/v1/completions")
	cw := &countingWriter{w: w, rc: http.NewResponseController(w), total: s.written[f]}
	defer func() {
		rec.End, rec.Written = time.Now(), cw.n
		live.Add(-1)
		s.finish(rec)
	}()
	rec.ClientGone = s.serve(r.Context(), f, text, cw, r)
}

// serve answers with fault f and reports whether the client went away.
func (s *Server) serve(ctx context.Context, f Fault, text bool, w *countingWriter, r *http.Request) (gone bool) {
	switch f {
	case OK:
		return s.stream(ctx, w, text, s.cfg.Tokens, true)
	case StallHeaders:
		return s.stall(ctx)
	case StallMidStream:
		if s.stream(ctx, w, text, s.cfg.StallAfter, false) {
			return true
		}
		return s.stall(ctx)
	case ResetMidStream:
		if s.stream(ctx, w, text, s.cfg.StallAfter, false) {
			return true
		}
		reset(w)
		return false
	case Garbage:
		sseHeader(w)
		_, err := w.WriteFlush([]byte("data: {\"choices\":[{\"delta\":\x00\xff not json\n\n"))
		return err != nil
	case EndlessLine:
		sseHeader(w)
		if _, err := w.WriteFlush([]byte("data: ")); err != nil {
			return true
		}
		return s.flood(ctx, w, []byte(strings.Repeat("x", 32<<10)))
	case HugeBody:
		sseHeader(w)
		return s.flood(ctx, w, []byte(": "+strings.Repeat("p", 1021)+"\n"))
	case Endless:
		sseHeader(w)
		return s.flood(ctx, w, chunk(text, strings.Repeat(Word, 160), ""))
	case RateLimited:
		errorAnswer(w, http.StatusTooManyRequests, s.cfg.RetryAfter, "rate_limit_error", RateLimitedMessage)
	case ServerError:
		errorAnswer(w, http.StatusInternalServerError, 0, "server_error", ServerErrorMessage)
	case Overloaded:
		errorAnswer(w, http.StatusServiceUnavailable, s.cfg.RetryAfter, "service_unavailable", OverloadedMessage)
	case EchoKey:
		errorAnswer(w, http.StatusUnauthorized, 0, "invalid_request_error",
			"Incorrect API key provided: "+r.Header.Get("Authorization"))
	case Flaky:
		switch s.flakySeq.Add(1) % 4 {
		case 2:
			errorAnswer(w, http.StatusServiceUnavailable, 0, "service_unavailable", OverloadedMessage)
			return false
		case 0:
			return s.serve(ctx, ResetMidStream, text, w, r)
		}
		return s.stream(ctx, w, text, s.cfg.Tokens, true)
	}
	return false
}

// stream sends n content chunks and, if finish, the final chunk and [DONE].
func (s *Server) stream(ctx context.Context, w *countingWriter, text bool, n int, finish bool) (gone bool) {
	sseHeader(w)
	for i := 0; i < n; i++ {
		if s.cfg.Delay > 0 {
			select {
			case <-ctx.Done():
				return true
			case <-s.quit:
				return false
			case <-time.After(s.cfg.Delay):
			}
		}
		if _, err := w.WriteFlush(chunk(text, Word, "")); err != nil {
			return true
		}
	}
	if !finish {
		return false
	}
	if _, err := w.WriteFlush(chunk(text, "", "stop")); err != nil {
		return true
	}
	_, err := w.WriteFlush([]byte("data: [DONE]\n\n"))
	return err != nil
}

// stall blocks until the client goes away or the server closes.
func (s *Server) stall(ctx context.Context) (gone bool) {
	select {
	case <-ctx.Done():
		return true
	case <-s.quit:
		return false
	}
}

// flood writes block until a write fails (the client went away), the
// server closes or MaxWrite is reached.
func (s *Server) flood(ctx context.Context, w *countingWriter, block []byte) (gone bool) {
	for w.n < s.cfg.MaxWrite {
		select {
		case <-ctx.Done():
			return true
		case <-s.quit:
			return false
		default:
		}
		if _, err := w.WriteFlush(block); err != nil {
			return true
		}
	}
	return false
}

// reset hijacks the connection and closes it with SO_LINGER 0, so the
// kernel sends RST instead of FIN: the peer's next read fails with
// ECONNRESET, as when a model server process dies.
func reset(w *countingWriter) {
	conn, _, err := w.rc.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func sseHeader(w *countingWriter) {
	if w.wrote {
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	w.wrote = true
}

// chunk renders one OpenAI streaming frame: chat (delta.content) or text
// completion (text), with an optional finish reason.
func chunk(text bool, content, finish string) []byte {
	choice := map[string]any{"index": 0, "finish_reason": nil}
	if finish != "" {
		choice["finish_reason"] = finish
	}
	object := "chat.completion.chunk"
	if text {
		object = "text_completion"
		choice["text"] = content
	} else {
		choice["delta"] = map[string]any{"content": content}
	}
	b, _ := json.Marshal(map[string]any{"id": "cmpl-fault", "object": object, "created": 0, "model": "faultmodel", "choices": []any{choice}})
	return fmt.Appendf(nil, "data: %s\n\n", b)
}

// errorAnswer writes an OpenAI-style error document.
func errorAnswer(w *countingWriter, code, retryAfter int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
	}
	w.WriteHeader(code)
	w.wrote = true
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": nil}})
	_, _ = w.Write(b)
}

// countingWriter counts body bytes and flushes after each frame so the
// client sees every chunk when it is written.
type countingWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	n     int64
	total *atomic.Int64 // the fault's running total, shared across requests
	wrote bool
}

func (c *countingWriter) Header() http.Header  { return c.w.Header() }
func (c *countingWriter) WriteHeader(code int) { c.w.WriteHeader(code) }

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.total.Add(int64(n))
	return n, err
}

// WriteFlush writes p and flushes it to the connection.
func (c *countingWriter) WriteFlush(p []byte) (int, error) {
	n, err := c.Write(p)
	if err != nil {
		return n, err
	}
	return n, c.rc.Flush()
}

// ClosedURL returns the endpoint of a model server that refuses
// connections: a loopback port that was bound and released. Another
// process may in principle take the port; tests accept that small risk.
func ClosedURL() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", err
	}
	return "http://" + addr + "/v1", nil
}
