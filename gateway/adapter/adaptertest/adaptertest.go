// Package adaptertest is the conformance suite every model adapter passes:
// it replays the shared wire fixtures from a local HTTP server over real
// sockets (whole, one byte per write, and at random split points) and checks
// the adapter's text, finish, usage and error classification, the request it
// sent, that it never echoes the API key, that it fails closed on every
// truncation, that it enforces the timeouts and bounds, and that a cancelled
// context closes the upstream connection at once.
package adaptertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// TestKey is the API key the suite configures. It deliberately does not
// look like a key, so only explicit scrubbing of the configured key keeps it
// out of error messages.
const TestKey = "hunter2-airlock-test-key"

// Config describes the adapter under test.
type Config struct {
	// Provider names the adapter in subtest names.
	Provider string
	// New builds the adapter; the suite passes its own HTTP client, timeouts
	// and bounds.
	New adapter.Constructor
	// Model is the model template; the suite sets Endpoint and APIKey.
	Model adapter.Model
	// Endpoint returns Model.Endpoint for a server at baseURL (default: baseURL).
	Endpoint func(baseURL string) string
	// Providers lists the fixture providers this adapter speaks.
	Providers []string
	// PathSuffix keeps only fixtures whose request path ends with it.
	PathSuffix string
	// AuthHeader is the header carrying the key; AuthPrefix precedes the key
	// in its value ("Bearer ").
	AuthHeader string
	AuthPrefix string
	// NoModelInBody is set for APIs whose body does not name the model.
	NoModelInBody bool
	// Request returns the request to send (default: duo_chat, one message).
	Request func() *adapter.Request
	// Tools is required for an adapter that implements adapter.ToolTaker
	// (and refused for one that does not).
	Tools *ToolStream
}

func (c *Config) request(endpoint string) *adapter.Request {
	var r *adapter.Request
	if c.Request != nil {
		r = c.Request()
	} else {
		r = &adapter.Request{Feature: feature.DuoChat, Messages: []adapter.Message{{Role: "user", Content: "Say hello."}}}
	}
	r.Model = c.Model
	if r.Model.Identifier == "" {
		r.Model.Identifier = "test-model"
	}
	r.Model.Endpoint = endpoint
	r.Model.APIKey = TestKey
	return r
}

func (c *Config) endpoint(base string) string {
	if c.Endpoint != nil {
		return c.Endpoint(base)
	}
	return base
}

func (c *Config) cases(t *testing.T) []Fixture {
	var out []Fixture
	for _, f := range LoadFixtures(t) {
		if slices.Contains(c.Providers, f.Provider) && strings.HasSuffix(f.Path(), c.PathSuffix) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no fixture cases for providers %v with path suffix %q", c.Providers, c.PathSuffix)
	}
	return out
}

// harness owns the HTTP client of one suite run.
type harness struct {
	cfg Config
	tr  *http.Transport
}

func (h *harness) adapter(t *testing.T, timeouts adapter.Timeouts, maxEvent int) adapter.Adapter {
	t.Helper()
	a, err := h.cfg.New(adapter.Config{Transport: h.tr, Timeouts: timeouts, MaxEventBytes: maxEvent})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// Run runs the conformance suite against the adapter cfg describes.
func Run(t *testing.T, cfg Config) {
	h := &harness{cfg: cfg, tr: &http.Transport{}}
	t.Cleanup(h.tr.CloseIdleConnections)
	cases := cfg.cases(t)

	for _, fx := range cases {
		t.Run(cfg.Provider+"/"+fx.Case, func(t *testing.T) {
			for _, d := range deliveries(fx.Body) {
				t.Run(d.name, func(t *testing.T) { h.replay(t, fx, d.chunks) })
			}
		})
	}
	ok := successCase(t, cases)
	t.Run(cfg.Provider+"/every_strict_prefix_fails_closed", func(t *testing.T) { h.prefixes(t, ok) })
	t.Run(cfg.Provider+"/cancel_closes_upstream_within_100ms", func(t *testing.T) { h.cancel(t, ok) })
	t.Run(cfg.Provider+"/text_handed_on_while_the_model_pauses", func(t *testing.T) { h.textBeforePause(t, ok) })
	t.Run(cfg.Provider+"/emit_error_stops_stream", func(t *testing.T) { h.emitError(t, ok) })
	t.Run(cfg.Provider+"/configured_key_never_echoed", func(t *testing.T) { h.keyEcho(t) })
	t.Run(cfg.Provider+"/timeouts", func(t *testing.T) { h.timeouts(t, ok) })
	t.Run(cfg.Provider+"/oversized_event_rejected", func(t *testing.T) { h.oversized(t, ok) })
	t.Run(cfg.Provider+"/connection_refused_is_unavailable", func(t *testing.T) { h.refused(t) })
	t.Run(cfg.Provider+"/tools", func(t *testing.T) { h.tools(t) })
}

type delivery struct {
	name   string
	chunks [][]byte
}

// deliveries splits body the ways the fixture README asks for.
func deliveries(body []byte) []delivery {
	ds := []delivery{{name: "whole", chunks: [][]byte{body}}}
	bytewise := make([][]byte, len(body))
	for i := range body {
		bytewise[i] = body[i : i+1]
	}
	ds = append(ds, delivery{name: "byte_per_write", chunks: bytewise})
	for seed := uint64(1); seed <= 3; seed++ {
		r := rand.New(rand.NewPCG(seed, 0xA1))
		cuts := []int{0, len(body)}
		for range 12 {
			cuts = append(cuts, r.IntN(len(body)+1))
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		var chunks [][]byte
		for i := 1; i < len(cuts); i++ {
			chunks = append(chunks, body[cuts[i-1]:cuts[i]])
		}
		ds = append(ds, delivery{name: fmt.Sprintf("random_splits_seed_%d", seed), chunks: chunks})
	}
	return ds
}

// recorded is what the server saw of the adapter's request.
type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// serve starts a server that answers with fx's status and headers and writes
// chunks with a flush after each. It records the request.
func serve(t *testing.T, fx Fixture, chunks [][]byte) (*httptest.Server, <-chan recorded) {
	t.Helper()
	got := make(chan recorded, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case got <- recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), b}:
		default:
		}
		for k, v := range fx.ResponseHeaders {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", fx.ContentType)
		w.WriteHeader(fx.HTTPStatus)
		fl, _ := w.(http.Flusher)
		for _, c := range chunks {
			if _, err := w.Write(c); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func (h *harness) replay(t *testing.T, fx Fixture, chunks [][]byte) {
	srv, got := serve(t, fx, chunks)
	a := h.adapter(t, adapter.Timeouts{Total: 10 * time.Second}, 0)
	req := h.cfg.request(h.cfg.endpoint(srv.URL))
	var text strings.Builder
	res, err := a.Stream(context.Background(), req, func(d adapter.Delta) error {
		if d.Empty() {
			t.Error("emit called with an empty delta")
		}
		if len(d.ToolCalls) > 0 {
			t.Errorf("tool-call delta %+v from a request without tools", d.ToolCalls)
		}
		text.WriteString(d.Text)
		return nil
	})
	h.checkRequest(t, fx, <-got)
	if text.String() != fx.ExpectedText {
		t.Errorf("text:\n got %q\nwant %q", text.String(), fx.ExpectedText)
	}
	if fx.ExpectedError == nil {
		if err != nil {
			t.Fatalf("Stream error = %v, want none", err)
		}
		checkResult(t, fx, res)
		return
	}
	checkError(t, fx, res, err)
}

func (h *harness) checkRequest(t *testing.T, fx Fixture, r recorded) {
	t.Helper()
	if r.method != fx.HTTPMethod {
		t.Errorf("method = %s, want %s", r.method, fx.HTTPMethod)
	}
	if r.path != fx.Path() {
		t.Errorf("path = %s, want %s", r.path, fx.Path())
	}
	if q := fx.Query(); q != "" {
		want, _ := url.ParseQuery(q)
		gotQ, _ := url.ParseQuery(r.query)
		for k := range want {
			if gotQ.Get(k) != want.Get(k) {
				t.Errorf("query %s = %q, want %q", k, gotQ.Get(k), want.Get(k))
			}
		}
	}
	if v := r.header.Get(h.cfg.AuthHeader); v != h.cfg.AuthPrefix+TestKey {
		t.Errorf("header %s = %q, want %q", h.cfg.AuthHeader, v, h.cfg.AuthPrefix+TestKey)
	}
	for _, other := range []string{"Authorization", "Api-Key", "X-Api-Key"} {
		if !strings.EqualFold(other, h.cfg.AuthHeader) && r.header.Get(other) != "" {
			t.Errorf("key also sent in header %s", other)
		}
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("request body is not a JSON object: %v", err)
	}
	if body["stream"] != true {
		t.Errorf("request body stream = %v, want true", body["stream"])
	}
	if !h.cfg.NoModelInBody {
		if want := h.cfg.request("").Model.Identifier; body["model"] != want {
			t.Errorf("request body model = %v, want %q", body["model"], want)
		}
	}
	if bytes.Contains(r.body, []byte(TestKey)) {
		t.Error("API key sent in the request body")
	}
}

func checkResult(t *testing.T, fx Fixture, res adapter.Result) {
	t.Helper()
	if string(res.Finish) != fx.ExpectedFinish {
		t.Errorf("finish = %q, want %q", res.Finish, fx.ExpectedFinish)
	}
	if fx.RawFinishReason != nil && res.RawFinish != *fx.RawFinishReason {
		t.Errorf("raw finish = %q, want %q", res.RawFinish, *fx.RawFinishReason)
	}
	switch {
	case fx.ExpectedUsage == nil && res.Usage != nil:
		t.Errorf("usage = %+v, want none", *res.Usage)
	case fx.ExpectedUsage != nil && res.Usage == nil:
		t.Errorf("usage = none, want %+v", *fx.ExpectedUsage)
	case fx.ExpectedUsage != nil:
		want := adapter.Usage{PromptTokens: fx.ExpectedUsage.PromptTokens, CompletionTokens: fx.ExpectedUsage.CompletionTokens}
		if *res.Usage != want {
			t.Errorf("usage = %+v, want %+v", *res.Usage, want)
		}
	}
}

// wantKind derives the failure kind a fixture's error maps to.
func wantKind(fx Fixture) adapter.Kind {
	switch s := fx.HTTPStatus; {
	case s == 401 || s == 403:
		return adapter.KindAuth
	case s == 429:
		return adapter.KindRateLimited
	case s >= 500:
		return adapter.KindUnavailable
	case s == 404 || s == 405:
		return adapter.KindMisconfigured
	case s >= 400:
		return adapter.KindBadRequest
	}
	if strings.Contains(*fx.ExpectedError, "ended before completion") {
		return adapter.KindMalformed
	}
	return adapter.KindStreamError
}

func checkError(t *testing.T, fx Fixture, res adapter.Result, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Stream succeeded with %+v, want error %q", res, *fx.ExpectedError)
	}
	if res.Usage != nil {
		t.Errorf("usage = %+v on error, want none", *res.Usage)
	}
	if strings.Contains(err.Error(), TestKey) {
		t.Errorf("error string contains the API key: %q", err)
	}
	e, ok := adapter.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) is not *adapter.Error", err, err)
	}
	if want := wantKind(fx); e.Kind != want {
		t.Errorf("kind = %d, want %d (%v)", e.Kind, want, err)
	}
	if fx.HTTPStatus != 200 && e.HTTPStatus != fx.HTTPStatus {
		t.Errorf("HTTPStatus = %d, want %d", e.HTTPStatus, fx.HTTPStatus)
	}
	if f := fx.ExpectedErrorFields; f != nil {
		if f.Type != nil && e.Type != *f.Type {
			t.Errorf("type = %q, want %q", e.Type, *f.Type)
		}
		if f.Code != nil && e.Code != *f.Code {
			t.Errorf("code = %q, want %q", e.Code, *f.Code)
		}
		if f.Message != nil && e.Message != *f.Message {
			t.Errorf("message = %q, want %q", e.Message, *f.Message)
		}
		if f.Retryable != nil && e.Retryable != *f.Retryable {
			t.Errorf("retryable = %v, want %v", e.Retryable, *f.Retryable)
		}
	}
	if fx.HTTPStatus != 200 {
		var want time.Duration
		if fx.ExpectedRetryAfterSeconds != nil {
			want = time.Duration(*fx.ExpectedRetryAfterSeconds * float64(time.Second))
		}
		if e.RetryAfter != want {
			t.Errorf("retry after = %v, want %v", e.RetryAfter, want)
		}
	}
}

// successCase picks the first fixture that streams text and ends cleanly.
func successCase(t *testing.T, cases []Fixture) Fixture {
	for _, f := range cases {
		if f.ExpectedError == nil && f.ExpectedText != "" {
			return f
		}
	}
	t.Fatal("no successful fixture case with text for this adapter")
	return Fixture{}
}

// prefixes replays strict prefixes of a good body: each must fail (the
// completion marker is missing or unterminated) and the text delivered must
// be a prefix of the full answer.
func (h *harness) prefixes(t *testing.T, fx Fixture) {
	r := rand.New(rand.NewPCG(7, 7))
	cuts := []int{0, 1, len(fx.Body) - 1, len(fx.Body) / 2}
	for range 16 {
		cuts = append(cuts, r.IntN(len(fx.Body)))
	}
	for _, n := range cuts {
		cut := fx
		cut.Body = fx.Body[:n]
		srv, got := serve(t, cut, [][]byte{cut.Body})
		a := h.adapter(t, adapter.Timeouts{Total: 10 * time.Second}, 0)
		var text strings.Builder
		_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(d adapter.Delta) error {
			text.WriteString(d.Text)
			return nil
		})
		<-got
		if err == nil {
			t.Errorf("prefix of %d/%d bytes: Stream succeeded, want error", n, len(fx.Body))
			continue
		}
		if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindMalformed {
			t.Errorf("prefix of %d bytes: error %v, want KindMalformed", n, err)
		}
		if !strings.HasPrefix(fx.ExpectedText, text.String()) {
			t.Errorf("prefix of %d bytes: text %q is not a prefix of %q", n, text.String(), fx.ExpectedText)
		}
	}
}

// stallServer writes head, then holds the response open until the client
// goes away (reported on gone) or the test ends.
func stallServer(t *testing.T, fx Fixture, head []byte, delayHeaders time.Duration) (*httptest.Server, <-chan time.Time) {
	t.Helper()
	gone := make(chan time.Time, 1)
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if delayHeaders > 0 {
			select {
			case <-time.After(delayHeaders):
			case <-r.Context().Done():
				gone <- time.Now()
				return
			case <-stop:
				return
			}
		}
		w.Header().Set("Content-Type", fx.ContentType)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(head)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			gone <- time.Now()
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs before srv.Close
	return srv, gone
}

// head returns the start of a good body up to an event boundary after some
// text: enough for the adapter to emit, never the completion marker.
func head(fx Fixture) []byte {
	b := fx.Body[:len(fx.Body)/2]
	sep := []byte("\n\n")
	if bytes.Contains(fx.Body, []byte("\r\n\r\n")) {
		sep = []byte("\r\n\r\n")
	} else if !bytes.Contains(fx.Body, sep) {
		sep = []byte("\n") // NDJSON
	}
	if i := bytes.LastIndex(b, sep); i >= 0 {
		return b[:i+len(sep)]
	}
	return b
}

func (h *harness) cancel(t *testing.T, fx Fixture) {
	srv, gone := stallServer(t, fx, head(fx), 0)
	a := h.adapter(t, adapter.Timeouts{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	cancelled := make(chan time.Time, 1)
	doCancel := func() { once.Do(func() { cancelled <- time.Now(); cancel() }) }
	timer := time.AfterFunc(2*time.Second, doCancel) // in case nothing is emitted
	defer timer.Stop()
	done := make(chan error, 1)
	go func() {
		_, err := a.Stream(ctx, h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error {
			go doCancel() // cancel from outside, as a departing gRPC client does
			return nil
		})
		done <- err
	}()
	select {
	case at := <-gone:
		if d := at.Sub(<-cancelled); d > 100*time.Millisecond {
			t.Errorf("upstream connection closed %v after cancel, want <= 100ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("upstream connection still open 5s after cancel")
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Stream error = %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Stream did not return after cancel")
	}
}

// textBeforePause checks that text the server sent is handed to emit while
// the adapter waits for more: an adapter may join deltas that arrived
// together, never hold them while the model pauses.
func (h *harness) textBeforePause(t *testing.T, fx Fixture) {
	srv, _ := stallServer(t, fx, head(fx), 0)
	a := h.adapter(t, adapter.Timeouts{}, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		_, err := a.Stream(ctx, h.cfg.request(h.cfg.endpoint(srv.URL)), func(d adapter.Delta) error {
			select {
			case got <- d.Text:
			default:
			}
			return nil
		})
		done <- err
	}()
	select {
	case text := <-got:
		if !strings.HasPrefix(fx.ExpectedText, text) {
			t.Errorf("first delta %q is not a prefix of the expected text %q", text, fx.ExpectedText)
		}
	case err := <-done:
		t.Fatalf("Stream returned %v before handing on any text", err)
	case <-time.After(2 * time.Second):
		t.Fatal("no text handed on within 2s although the server sent some and paused")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Stream after cancel = %v, want context.Canceled", err)
	}
}

func (h *harness) emitError(t *testing.T, fx Fixture) {
	srv, gone := stallServer(t, fx, head(fx), 0)
	a := h.adapter(t, adapter.Timeouts{Total: 5 * time.Second}, 0)
	errStop := errors.New("client went away")
	calls := 0
	_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Errorf("Stream error = %v, want the emit error", err)
	}
	if calls != 1 {
		t.Errorf("emit called %d times after returning an error, want 1", calls)
	}
	select {
	case <-gone:
	case <-time.After(time.Second):
		t.Error("upstream connection not closed after emit failed")
	}
}

// keyEcho answers with error bodies that quote the configured key verbatim,
// in each style servers use, and checks that no part of the returned error
// carries it.
func (h *harness) keyEcho(t *testing.T) {
	bodies := map[string]string{
		"openai":    `{"error":{"message":"Incorrect API key provided: ` + TestKey + `.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
		"anthropic": `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key ` + TestKey + `"}}`,
		"plain":     `{"error":"unauthorized: key ` + TestKey + ` rejected"}`,
		"not_json":  `unauthorized ` + TestKey,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			fx := Fixture{HTTPStatus: http.StatusUnauthorized, ContentType: "application/json"}
			srv, got := serve(t, fx, [][]byte{[]byte(body)})
			a := h.adapter(t, adapter.Timeouts{Total: 5 * time.Second}, 0)
			_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error { return nil })
			<-got
			e, ok := adapter.AsError(err)
			if !ok {
				t.Fatalf("error %v is not *adapter.Error", err)
			}
			if e.Kind != adapter.KindAuth || e.Retryable {
				t.Errorf("kind %d retryable %v, want KindAuth, not retryable", e.Kind, e.Retryable)
			}
			for _, s := range []string{err.Error(), e.Message, e.Type, e.Code} {
				if strings.Contains(s, TestKey) {
					t.Errorf("error carries the API key: %q", s)
				}
			}
		})
	}
}

func (h *harness) timeouts(t *testing.T, fx Fixture) {
	t.Run("first_byte", func(t *testing.T) {
		srv, _ := stallServer(t, fx, head(fx), time.Minute)
		a := h.adapter(t, adapter.Timeouts{FirstByte: 50 * time.Millisecond}, 0)
		_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error { return nil })
		wantTimeout(t, err, "first_byte")
	})
	t.Run("idle", func(t *testing.T) {
		srv, _ := stallServer(t, fx, head(fx), 0)
		a := h.adapter(t, adapter.Timeouts{FirstByte: time.Second, Idle: 50 * time.Millisecond}, 0)
		_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error { return nil })
		wantTimeout(t, err, "idle")
	})
	t.Run("total", func(t *testing.T) {
		srv, _ := stallServer(t, fx, head(fx), 0)
		a := h.adapter(t, adapter.Timeouts{Idle: time.Second, Total: 80 * time.Millisecond}, 0)
		_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error { return nil })
		wantTimeout(t, err, "total")
	})
	t.Run("connect", func(t *testing.T) {
		a, err := h.cfg.New(adapter.Config{Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: timeoutErr{}}
			},
		}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint("http://192.0.2.1:9")), func(adapter.Delta) error { return nil })
		wantTimeout(t, err, "connect")
	})
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func wantTimeout(t *testing.T, err error, which string) {
	t.Helper()
	e, ok := adapter.AsError(err)
	if !ok || e.Kind != adapter.KindTimeout || e.Timeout != which {
		t.Fatalf("error = %v (%+v), want KindTimeout %q", err, e, which)
	}
}

// oversized sends one endless line: the adapter must stop at the bound.
func (h *harness) oversized(t *testing.T, fx Fixture) {
	const max = 4 << 10
	big := append([]byte("data: "), bytes.Repeat([]byte("x"), 64<<10)...)
	if !bytes.Contains(fx.Body, []byte("data:")) {
		big = bytes.Repeat([]byte("x"), 64<<10) // NDJSON
	}
	srv, _ := serve(t, Fixture{HTTPStatus: 200, ContentType: fx.ContentType}, [][]byte{big})
	a := h.adapter(t, adapter.Timeouts{Total: 5 * time.Second}, max)
	_, err := a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint(srv.URL)), func(adapter.Delta) error { return nil })
	if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindMalformed {
		t.Fatalf("error = %v, want KindMalformed for an event over %d bytes", err, max)
	}
}

func (h *harness) refused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	a := h.adapter(t, adapter.Timeouts{Total: 5 * time.Second}, 0)
	_, err = a.Stream(context.Background(), h.cfg.request(h.cfg.endpoint("http://"+addr)), func(adapter.Delta) error { return nil })
	if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindUnavailable || !e.Retryable {
		t.Fatalf("error = %v, want retryable KindUnavailable", err)
	}
}
