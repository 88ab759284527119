package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/internal/h1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return epoch }

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"no header", nil, 0},
		{"seconds", map[string]string{"retry-after": "1"}, time.Second},
		{"fractional seconds", map[string]string{"retry-after": "0.25"}, 250 * time.Millisecond},
		{"milliseconds win over seconds", map[string]string{"retry-after-ms": "226", "retry-after": "1"}, 226 * time.Millisecond},
		{"fractional milliseconds", map[string]string{"retry-after-ms": "1.5"}, 1500 * time.Microsecond},
		{"bad milliseconds fall back to seconds", map[string]string{"retry-after-ms": "soon", "retry-after": "2"}, 2 * time.Second},
		{"http date in the future", map[string]string{"retry-after": epoch.Add(30 * time.Second).Format(http.TimeFormat)}, 30 * time.Second},
		{"http date in the past", map[string]string{"retry-after": epoch.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"negative seconds", map[string]string{"retry-after": "-5"}, 0},
		{"garbage", map[string]string{"retry-after": "later please"}, 0},
		{"x-ratelimit-reset is informational only", map[string]string{"x-ratelimit-reset-tokens": "226ms"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := RetryAfter(h, fixedNow); got != tt.want {
				t.Fatalf("RetryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}

const secret = "plain-configured-secret"

func TestScrub(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain message kept", "Overloaded", "Overloaded"},
		{"configured key removed", "bad key " + secret + " given", "bad key [redacted] given"},
		{"masked openai key removed", "Incorrect API key provided: sk-proj-****8Xq2.", "Incorrect API key provided: [redacted]."},
		{"bearer value removed", "header Authorization: Bearer abc.def.ghi rejected", "header Authorization: [redacted] rejected"},
		{"long token run removed", "token 0123456789abcdef0123456789abcdef0123 invalid", "token [redacted] invalid"},
		{"control characters flattened", "line1\nline2\x00end", "line1 line2 end"},
		{"invalid utf-8 replaced", "bad \xff byte", "bad \uFFFD byte"},
		{"empty stays empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Scrub(tt.in, secret); got != tt.want {
				t.Fatalf("Scrub(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestScrubBoundsLengthOnRuneBoundary(t *testing.T) {
	got := Scrub(strings.Repeat("é ", 400), "")
	if len(got) > maxMessage+len("…") || !utf8.ValidString(got) {
		t.Fatalf("Scrub returned %d bytes (valid UTF-8: %v)", len(got), utf8.ValidString(got))
	}
}

// FuzzScrub: whatever upstream sends, the configured key never survives.
func FuzzScrub(f *testing.F) {
	f.Add("Incorrect API key provided: my-key-123", "my-key-123")
	f.Fuzz(func(t *testing.T, msg, key string) {
		got := Scrub(msg, key)
		if key != "" && strings.Contains(got, key) {
			t.Fatalf("Scrub(%q, %q) = %q still contains the key", msg, key, got)
		}
		if !utf8.ValidString(got) || len(got) > maxMessage+len("…")+len(redacted) {
			t.Fatalf("Scrub returned %q", got)
		}
	})
}

func resp(status int, body string, hdr map[string]string) *http.Response {
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestHTTPError(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		hdr    map[string]string
		want   adapter.Error
	}{
		{"openai 401", 401, `{"error":{"message":"Incorrect API key provided: ` + secret + `","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, nil,
			adapter.Error{Kind: adapter.KindAuth, HTTPStatus: 401, Type: "invalid_request_error", Code: "invalid_api_key", Message: "Incorrect API key provided: [redacted]"}},
		{"403 is auth", 403, `{"error":{"message":"forbidden"}}`, nil,
			adapter.Error{Kind: adapter.KindAuth, HTTPStatus: 403, Message: "forbidden"}},
		{"429 with retry-after", 429, `{"error":{"message":"slow down","type":"tokens","code":"rate_limit_exceeded"}}`, map[string]string{"retry-after": "1"},
			adapter.Error{Kind: adapter.KindRateLimited, HTTPStatus: 429, Type: "tokens", Code: "rate_limit_exceeded", Message: "slow down", Retryable: true, RetryAfter: time.Second}},
		{"azure numeric-string code", 429, `{"error":{"code":"429","message":"Requests exceeded"}}`, map[string]string{"retry-after-ms": "500"},
			adapter.Error{Kind: adapter.KindRateLimited, HTTPStatus: 429, Code: "429", Message: "Requests exceeded", Retryable: true, RetryAfter: 500 * time.Millisecond}},
		{"anthropic 529 overloaded", 529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}`, nil,
			adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 529, Type: "overloaded_error", Message: "Overloaded", Retryable: true}},
		{"500 html body", 500, `<html>oops</html>`, nil,
			adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 500, Message: "Internal Server Error", Retryable: true}},
		{"503 retry-after seconds", 503, ``, map[string]string{"retry-after": "3"},
			adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "Service Unavailable", Retryable: true, RetryAfter: 3 * time.Second}},
		{"ollama unknown model 404 is the model's configuration", 404, `{"error":"model \"x\" not found, try pulling it first"}`, nil,
			adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 404, Message: `model "x" not found, try pulling it first`}},
		{"wrong path 404 with an html body", 404, `<html>nope</html>`, nil,
			adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 404, Message: "Not Found"}},
		{"wrong method 405", 405, ``, nil,
			adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 405, Message: "Method Not Allowed"}},
		{"openai model_not_found 400", 400, `{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}`, nil,
			adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 400, Type: "invalid_request_error", Code: "model_not_found", Message: "The model does not exist"}},
		{"vllm flat error 400", 400, `{"object":"error","message":"max_tokens too large","type":"BadRequestError","param":null,"code":400}`, nil,
			adapter.Error{Kind: adapter.KindBadRequest, HTTPStatus: 400, Type: "BadRequestError", Code: "400", Message: "max_tokens too large"}},
		{"400 does not honour retry-after", 400, `{}`, map[string]string{"retry-after": "9"},
			adapter.Error{Kind: adapter.KindBadRequest, HTTPStatus: 400, Message: "Bad Request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HTTPError(resp(tt.status, tt.body, tt.hdr), secret, fixedNow)
			if *got != tt.want {
				t.Fatalf("HTTPError =\n %+v\nwant\n %+v", *got, tt.want)
			}
		})
	}
}

func TestHTTPErrorReadsABoundedBody(t *testing.T) {
	r := &endless{}
	e := HTTPError(&http.Response{StatusCode: 502, Header: http.Header{}, Body: io.NopCloser(r)}, "", fixedNow)
	if r.n > maxErrorBody+32<<10 {
		t.Fatalf("read %d bytes of an endless error body", r.n)
	}
	if e.Kind != adapter.KindUnavailable || e.Message != "Bad Gateway" {
		t.Fatalf("got %+v", e)
	}
}

type endless struct{ n int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '{'
	}
	e.n += len(p)
	return len(p), nil
}

func TestStreamError(t *testing.T) {
	tests := []struct {
		name string
		data string
		want adapter.Error
	}{
		{"openai object", `{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`,
			adapter.Error{Kind: adapter.KindStreamError, Type: "server_error", Message: "The server had an error", Retryable: true}},
		{"anthropic overloaded", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			adapter.Error{Kind: adapter.KindStreamError, Type: "overloaded_error", Message: "Overloaded", Retryable: true}},
		{"ollama string", `{"error":"an unknown error was encountered while running the model"}`,
			adapter.Error{Kind: adapter.KindStreamError, Message: "an unknown error was encountered while running the model"}},
		{"tgi error_type", `{"error":"Request failed during generation: Server error: CUDA OOM","error_type":"generation"}`,
			adapter.Error{Kind: adapter.KindStreamError, Type: "generation", Message: "Request failed during generation: Server error: CUDA OOM"}},
		{"llama.cpp bare error line", `{"code":500,"message":"context shift disabled","type":"server_error"}`,
			adapter.Error{Kind: adapter.KindStreamError, Type: "server_error", Code: "500", Message: "context shift disabled", Retryable: true}},
		{"unparsable", `not json`,
			adapter.Error{Kind: adapter.KindStreamError, Message: "model server reported an error in the stream"}},
		{"key scrubbed", `{"error":{"message":"key ` + secret + ` revoked","type":"invalid_request_error"}}`,
			adapter.Error{Kind: adapter.KindStreamError, Type: "invalid_request_error", Message: "key [redacted] revoked"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StreamError([]byte(tt.data), secret); *got != tt.want {
				t.Fatalf("StreamError =\n %+v\nwant\n %+v", *got, tt.want)
			}
		})
	}
}

func TestResponseEnforcesMaxBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 10000)))
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := New(adapter.Config{Transport: tr, MaxBodyBytes: 1000}, BearerKey)
	r, err := c.Start(context.Background(), Request{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n, err := io.Copy(io.Discard, r)
	e, ok := adapter.AsError(err)
	if !ok || e.Kind != adapter.KindMalformed {
		t.Fatalf("err = %v, want KindMalformed", err)
	}
	if n != 1000 {
		t.Fatalf("delivered %d bytes, want exactly the 1000-byte bound", n)
	}
}

func TestStartReportsCallerCancellationAsContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := New(adapter.Config{}, BearerKey)
	_, err := c.Start(ctx, Request{URL: "http://127.0.0.1:1"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if _, ok := adapter.AsError(err); ok {
		t.Fatal("caller cancellation reported as an upstream failure")
	}
}

func TestStartRejectsBadURL(t *testing.T) {
	c := New(adapter.Config{}, BearerKey)
	_, err := c.Start(context.Background(), Request{URL: "://nope"})
	if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindMisconfigured {
		t.Fatalf("err = %v, want KindMisconfigured", err)
	}
}

// A proxy's login page answers 200 in place of the model server: the call
// fails at once with a message that says so, instead of a decoding error.
func TestStartRefusesAPageInsteadOfAStream(t *testing.T) {
	for _, tc := range []struct {
		contentType string
		refused     bool
	}{
		{"text/html; charset=utf-8", true},
		{"application/xhtml+xml", true},
		{"text/event-stream", false},
		{"application/x-ndjson", false},
		{"", false},
	} {
		t.Run(tc.contentType, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = w.Write([]byte("<html><body>Please sign in</body></html>"))
			}))
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			r, err := New(adapter.Config{Transport: tr}, BearerKey).Start(context.Background(), Request{URL: srv.URL})
			if !tc.refused {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				r.Close()
				return
			}
			e, ok := adapter.AsError(err)
			if !ok || e.Kind != adapter.KindMisconfigured || !strings.Contains(e.Message, "instead of a stream") {
				t.Fatalf("err = %v, want KindMisconfigured naming the page", err)
			}
		})
	}
}

// The call's first-byte deadline cuts an attempt's own timeout, and a spent
// budget fails at once without sending anything.
func TestStartHonoursTheCallsFirstByteDeadline(t *testing.T) {
	var hits atomic.Int32
	stall := make(chan struct{})
	defer close(stall)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := New(adapter.Config{Transport: tr, Timeouts: adapter.Timeouts{FirstByte: time.Minute}}, BearerKey)

	begin := time.Now()
	ctx := adapter.WithFirstByteDeadline(context.Background(), begin.Add(200*time.Millisecond))
	_, err := c.Start(ctx, Request{URL: srv.URL})
	if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindTimeout || e.Timeout != TimeoutFirstByte {
		t.Fatalf("err = %v, want a first_byte timeout", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("took %v: the one-minute per-attempt timeout was used, not the call's deadline", took)
	}

	before := hits.Load()
	spent := adapter.WithFirstByteDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	if _, err := c.Start(spent, Request{URL: srv.URL}); err == nil {
		t.Fatal("Start succeeded with a spent budget")
	}
	if hits.Load() != before {
		t.Fatal("a request was sent although the budget was spent")
	}
}

// TestStartSendsTheCredential: the client, not the adapter, writes the key
// into the provider's header, and nothing a caller puts in Header can stand
// in for it or travel beside it.
func TestStartSendsTheCredential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cred   Credential
		key    string
		header http.Header
		want   map[string]string // header → value the server must see ("" = absent)
	}{
		{name: "bearer key", cred: BearerKey, key: "k1",
			want: map[string]string{"Authorization": "Bearer k1"}},
		{name: "key in its own header", cred: HeaderKey("X-Api-Key"), key: "k1",
			want: map[string]string{"X-Api-Key": "k1", "Authorization": ""}},
		{name: "no key sends no header", cred: BearerKey,
			want: map[string]string{"Authorization": ""}},
		{name: "caller's credential header is replaced", cred: HeaderKey("Api-Key"), key: "k1",
			header: http.Header{"Api-Key": {"smuggled"}, "Accept": {"text/event-stream"}},
			want:   map[string]string{"Api-Key": "k1", "Accept": "text/event-stream"}},
		{name: "caller's credential header is dropped without a key", cred: BearerKey,
			header: http.Header{"Authorization": {"Bearer smuggled"}},
			want:   map[string]string{"Authorization": ""}},
		{name: "a credential without a header never sends the key", key: "k1",
			want: map[string]string{"Authorization": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan http.Header, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- r.Header.Clone()
			}))
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			r, err := New(adapter.Config{Transport: tr}, tc.cred).
				Start(context.Background(), Request{URL: srv.URL, Header: tc.header, APIKey: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Close()
			h := <-got
			for name, want := range tc.want {
				if vs := h.Values(name); (want == "" && len(vs) != 0) || (want != "" && (len(vs) != 1 || vs[0] != want)) {
					t.Errorf("%s = %q, want %q", name, vs, want)
				}
			}
		})
	}
}

// TestTheKeyIsScrubbedFromEveryError: what the server echoes back, in an
// error status or inside a 200 stream, never carries the key.
func TestTheKeyIsScrubbedFromEveryError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg := `{"error":{"message":"bad key ` + r.Header.Get("X-Api-Key") + `","type":"invalid_request_error"}}`
		if r.URL.Path == "/status" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		_, _ = w.Write([]byte(msg))
	}))
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := New(adapter.Config{Transport: tr}, HeaderKey("X-Api-Key"))

	_, err := c.Start(context.Background(), Request{URL: srv.URL + "/status", APIKey: secret})
	if e, ok := adapter.AsError(err); !ok || strings.Contains(e.Error(), secret) || e.Message != "bad key [redacted]" {
		t.Fatalf("status error = %v, want the key redacted", err)
	}

	r, err := c.Start(context.Background(), Request{URL: srv.URL + "/stream", APIKey: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	frame, err := io.ReadAll(r)
	if err != nil || !strings.Contains(string(frame), secret) {
		t.Fatalf("the test server did not echo the key: %q, %v", frame, err)
	}
	if e := r.StreamError(frame); strings.Contains(e.Error(), secret) || e.Message != "bad key [redacted]" {
		t.Fatalf("StreamError = %+v, want the key redacted", e)
	}
}

// A model server's redirect is not followed, whatever its status: the
// request, its body and the key (here in a provider's own header, which
// net/http's client would carry to another host) reach the configured
// endpoint only, and the call fails as a misconfiguration.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
	}))
	defer other.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+"/v1/chat/completions", code)
			}))
			defer srv.Close()
			c := New(adapter.Config{Transport: srv.Client().Transport}, HeaderKey("X-Api-Key"))
			_, err := c.Start(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), APIKey: secret})
			e, ok := adapter.AsError(err)
			if !ok || e.Kind != adapter.KindMisconfigured || e.HTTPStatus != code || e.Retryable ||
				!strings.Contains(e.Message, "redirect") {
				t.Fatalf("err = %#v, want a misconfiguration naming the redirect", err)
			}
			if strings.Contains(e.Error(), secret) {
				t.Fatalf("the error carries the key: %v", e)
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests, want 0", n)
	}
}

// An adapter closes the Response at the answer's end marker; the server's
// final chunk follows in a write of its own. Close must leave the request
// live while the transport (h1) reads that rest, or every answer costs a
// new connection to the model server.
func TestCloseAtTheEndMarkerKeepsTheConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {}\n\ndata: [DONE]\n\n")
		w.(http.Flusher).Flush()
		time.Sleep(5 * time.Millisecond) // the final chunk goes when the handler returns
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var d net.Dialer
	tr := h1.New(h1.Config{Dial: d.DialContext})
	defer tr.CloseIdleConnections()
	c := New(adapter.Config{Transport: tr}, BearerKey)
	for range 3 {
		r, err := c.Start(context.Background(), Request{URL: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		buf := make([]byte, 64)
		for !bytes.Contains(got, []byte("[DONE]\n\n")) {
			n, err := r.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("read %q: %v", got, err)
			}
		}
		_ = r.Close()
		time.Sleep(200 * time.Millisecond) // past h1's bounded wait for the rest
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("3 answers over %d connections, want 1", n)
	}
}
