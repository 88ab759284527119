package openai

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeCompleter plays a scripted answer and records what it was asked.
type fakeCompleter struct {
	texts  []string
	deltas []completion.Delta // sent after the texts
	done   *gatewayv1.CompletionDone
	err    error // returned after the texts

	mu  sync.Mutex
	got []completion.Input
}

func (f *fakeCompleter) Serve(ctx context.Context, in completion.Input, emit func(completion.Delta) error) (*gatewayv1.CompletionDone, error) {
	return f.ServeStream(ctx, in, emit)
}

func (f *fakeCompleter) ServeStream(ctx context.Context, in completion.Input, send func(completion.Delta) error) (*gatewayv1.CompletionDone, error) {
	f.mu.Lock()
	f.got = append(f.got, in)
	f.mu.Unlock()
	if _, err := feature.Parse(in.Feature); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, _ := auth.IdentityFrom(ctx)
	if !feature.Feature(in.Feature).Allowed(id.Scopes) {
		return nil, status.Error(codes.PermissionDenied, "Unauthorized to access "+in.Feature)
	}
	for _, t := range f.texts {
		if err := send(completion.Delta{Text: t}); err != nil {
			return nil, err
		}
	}
	for _, d := range f.deltas {
		if err := send(d); err != nil {
			return nil, err
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	return f.done, nil
}

func (f *fakeCompleter) last() completion.Input {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[len(f.got)-1]
}

// fakeVerifier accepts "Bearer good" (every feature) and "Bearer chat"
// (duo_chat only).
type fakeVerifier struct{}

func (fakeVerifier) VerifyBearer(_ context.Context, _ string, md metadata.MD) (*auth.Identity, error) {
	switch strings.Join(md.Get("authorization"), ",") {
	case "Bearer good":
		return &auth.Identity{JTI: "j1", Scopes: feature.Scopes(feature.All)}, nil
	case "Bearer chat":
		return &auth.Identity{JTI: "j2", Scopes: feature.Scopes([]feature.Feature{feature.DuoChat})}, nil
	case "":
		return nil, status.Error(codes.Unauthenticated, auth.MsgNoAuthorization)
	}
	return nil, status.Error(codes.Unauthenticated, auth.MsgForbidden)
}

func (f fakeVerifier) VerifyFrom(ctx context.Context, client string, md metadata.MD) (*auth.Identity, error) {
	return nil, status.Error(codes.Internal, "the OpenAI dialect must not require the x-gitlab-* headers")
}

var fixedNow = time.Unix(1767225600, 0)

func newServer(t *testing.T, fc *fakeCompleter) *httptest.Server {
	t.Helper()
	d, err := New(Config{Completer: fc, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.NewHandler(httpapi.Config{Verifier: fakeVerifier{}, Dialects: []httpapi.Dialect{d}, MaxBodyBytes: 4096, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

func call(t *testing.T, srv *httptest.Server, method, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Request-Id", "req-1")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func okDone() *gatewayv1.CompletionDone {
	return &gatewayv1.CompletionDone{FinishReason: gatewayv1.FinishReason_FINISH_REASON_STOP, Model: "stub",
		Usage: &gatewayv1.Usage{PromptTokens: 3, CompletionTokens: 2}}
}

func TestChatCompletionNonStreamed(t *testing.T) {
	fc := &fakeCompleter{texts: []string{"Hello", " world"}, done: okDone()}
	srv := newServer(t, fc)
	a := call(t, srv, "POST", "/v1/chat/completions", "good",
		`{"model":"duo_chat","messages":[{"role":"developer","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Say"},{"type":"text","text":"hello"}]}],
		  "max_completion_tokens":50,"temperature":0.5,"top_p":0.9,"stop":"END","user":"u-1","some_future_field":{"x":1}}`)
	want := `{"id":"chatcmpl-req-1","object":"chat.completion","created":1767225600,"model":"duo_chat","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n"
	if a.status != 200 || a.body != want || a.header.Get("Content-Type") != "application/json" || a.header.Get("X-Request-Id") != "req-1" {
		t.Fatalf("answer %d %v\n%s\nwant\n%s", a.status, a.header, a.body, want)
	}
	in := fc.last()
	if in.Feature != "duo_chat" || len(in.Messages) != 2 || in.Messages[0].GetRole() != "system" || in.Messages[1].GetContent() != "Say\nhello" ||
		in.Options.GetMaxTokens() != 50 || in.Options.GetTemperature() != 0.5 || in.Options.GetTopP() != 0.9 || strings.Join(in.Options.GetStop(), ",") != "END" {
		t.Errorf("core input = %+v", in)
	}
}

func TestChatCompletionStreamedSSEBytes(t *testing.T) {
	fc := &fakeCompleter{texts: []string{"Hel", "lo"}, done: okDone()}
	srv := newServer(t, fc)
	head := `{"id":"chatcmpl-req-1","object":"chat.completion.chunk","created":1767225600,"model":"duo_chat","choices":[`
	tests := []struct {
		name, body, want string
	}{
		{"deltas, final chunk, [DONE]", `{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			"data: " + head + `{"index":0,"delta":{"role":"assistant","content":"Hel"},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
				"data: " + head + `{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
				"data: " + head + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
				"data: [DONE]\n\n"},
		{"usage chunk when asked", `{"model":"duo_chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
			"data: " + head + `{"index":0,"delta":{"role":"assistant","content":"Hel"},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
				"data: " + head + `{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
				"data: " + head + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
				"data: " + head + `],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}` + "\n\n" +
				"data: [DONE]\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, srv, "POST", "/v1/chat/completions", "good", tt.body)
			if a.status != 200 || a.header.Get("Content-Type") != "text/event-stream; charset=utf-8" || a.body != tt.want {
				t.Fatalf("answer %d %v\n%s\nwant\n%s", a.status, a.header, a.body, tt.want)
			}
		})
	}
}

func TestEmptyStreamStillHasRoleFinishAndDone(t *testing.T) {
	srv := newServer(t, &fakeCompleter{done: okDone()})
	a := call(t, srv, "POST", "/v1/chat/completions", "good", `{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	want := "data: " + `{"id":"chatcmpl-req-1","object":"chat.completion.chunk","created":1767225600,"model":"duo_chat","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
	if a.status != 200 || a.body != want {
		t.Fatalf("answer %d\n%s\nwant\n%s", a.status, a.body, want)
	}
}

func TestFailureAfterStreamingBeganIsAFinalErrorEvent(t *testing.T) {
	fc := &fakeCompleter{texts: []string{"partial"}, err: status.Error(codes.Unavailable, "model server unavailable: connection to the model server lost mid-stream")}
	srv := newServer(t, fc)
	a := call(t, srv, "POST", "/v1/chat/completions", "good", `{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	events := strings.Split(strings.TrimSuffix(a.body, "\n\n"), "\n\n")
	last := events[len(events)-1]
	wantLast := `data: {"error":{"message":"model server unavailable: connection to the model server lost mid-stream","type":"server_error","param":null,"code":"model_unavailable"}}`
	if a.status != 200 || len(events) != 2 || last != wantLast || strings.Contains(a.body, "[DONE]") || !strings.HasSuffix(a.body, "\n\n") {
		t.Fatalf("answer %d\n%q\nwant a text event then %s and no [DONE]", a.status, a.body, wantLast)
	}
}

func TestFailureBeforeAnyTextIsAnHTTPError(t *testing.T) {
	fc := &fakeCompleter{err: status.Error(codes.Unavailable, "model server unavailable: cannot reach the model server")}
	srv := newServer(t, fc)
	a := call(t, srv, "POST", "/v1/chat/completions", "good", `{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if a.status != 503 || a.header.Get("Content-Type") != "application/json" || !strings.Contains(a.body, `"type":"server_error"`) {
		t.Fatalf("answer %d %v %s", a.status, a.header, a.body)
	}
}

func TestFIMCompletions(t *testing.T) {
	fc := &fakeCompleter{texts: []string{"return a + b"}, done: &gatewayv1.CompletionDone{FinishReason: gatewayv1.FinishReason_FINISH_REASON_LENGTH}}
	srv := newServer(t, fc)
	a := call(t, srv, "POST", "/v1/completions", "good", `{"model":"code_completions","prompt":"def add(a, b):\n    ","suffix":"\n\nprint(add(1, 2))","max_tokens":16}`)
	want := `{"id":"cmpl-req-1","object":"text_completion","created":1767225600,"model":"code_completions","choices":[{"text":"return a + b","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}` + "\n"
	if a.status != 200 || a.body != want {
		t.Fatalf("answer %d\n%s\nwant\n%s", a.status, a.body, want)
	}
	in := fc.last()
	if in.Feature != "code_completions" || in.Code.GetContentAboveCursor() != "def add(a, b):\n    " || in.Code.GetContentBelowCursor() != "\n\nprint(add(1, 2))" || len(in.Messages) != 0 {
		t.Errorf("core input = %+v", in)
	}

	a = call(t, srv, "POST", "/v1/completions", "good", `{"model":"code_completions","prompt":["x = "],"stream":true}`)
	wantStream := "data: " + `{"id":"cmpl-req-1","object":"text_completion","created":1767225600,"model":"code_completions","choices":[{"text":"return a + b","index":0,"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		"data: " + `{"id":"cmpl-req-1","object":"text_completion","created":1767225600,"model":"code_completions","choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	if a.status != 200 || a.body != wantStream {
		t.Fatalf("stream %d\n%s\nwant\n%s", a.status, a.body, wantStream)
	}

	call(t, srv, "POST", "/v1/completions", "good", `{"model":"duo_chat","prompt":"hello"}`)
	if in := fc.last(); len(in.Messages) != 1 || in.Messages[0].GetContent() != "hello" || in.Code != nil {
		t.Errorf("duo_chat completion input = %+v", in)
	}
}

func TestModels(t *testing.T) {
	srv := newServer(t, &fakeCompleter{})
	tests := []struct {
		token, path string
		status      int
		want        string
	}{
		{"good", "/v1/models", 200, `{"object":"list","data":[{"id":"code_completions","object":"model","created":0,"owned_by":"airlock"},{"id":"code_generations","object":"model","created":0,"owned_by":"airlock"},{"id":"duo_chat","object":"model","created":0,"owned_by":"airlock"}]}` + "\n"},
		{"chat", "/v1/models", 200, `{"object":"list","data":[{"id":"duo_chat","object":"model","created":0,"owned_by":"airlock"}]}` + "\n"},
		{"chat", "/v1/models/duo_chat", 200, `{"id":"duo_chat","object":"model","created":0,"owned_by":"airlock"}` + "\n"},
		{"chat", "/v1/models/code_completions", 404, ""},
		{"", "/v1/models", 401, ""},
	}
	for _, tt := range tests {
		a := call(t, srv, "GET", tt.path, tt.token, "")
		if a.status != tt.status || (tt.want != "" && a.body != tt.want) {
			t.Errorf("GET %s as %q: %d %s", tt.path, tt.token, a.status, a.body)
		}
	}
}

func retryInfo(code codes.Code, msg string, d time.Duration) error {
	st, _ := status.New(code, msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	return st.Err()
}

func TestErrorsInOpenAIsEnvelope(t *testing.T) {
	chat := func(extra string) string {
		return `{"model":"duo_chat","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	tests := []struct {
		name       string
		token      string
		path, body string
		coreErr    error
		status     int
		errType    string
		param      string // "" for null
		code       string // "" for null
		msg        string // prefix
		retryAfter string
	}{
		{name: "no authorization", path: "/v1/chat/completions", body: chat(""), status: 401, errType: "authentication_error", code: "invalid_api_key", msg: auth.MsgNoAuthorization},
		{name: "bad token", token: "forged", path: "/v1/chat/completions", body: chat(""), status: 401, errType: "authentication_error", code: "invalid_api_key", msg: auth.MsgForbidden},
		{name: "feature not granted", token: "chat", path: "/v1/completions", body: `{"model":"code_completions","prompt":"x"}`, status: 403, errType: "permission_error", msg: "Unauthorized to access code_completions"},
		{name: "unknown model", token: "good", path: "/v1/chat/completions", body: `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, status: 404, errType: "not_found_error", param: "model", code: "model_not_found", msg: `The model "gpt-4o" does not exist`},
		{name: "model missing", token: "good", path: "/v1/chat/completions", body: `{"messages":[]}`, status: 400, errType: "invalid_request_error", param: "model", msg: "model: required"},
		{name: "JSON but not an object", token: "good", path: "/v1/chat/completions", body: `[1]`, status: 400, errType: "invalid_request_error", msg: "the request body must be a JSON object"},
		{name: "not JSON", token: "good", path: "/v1/chat/completions", body: `{"model":`, status: 400, errType: "invalid_request_error", msg: "the request body is not valid JSON"},
		{name: "wrong type", token: "good", path: "/v1/chat/completions", body: `{"model":"duo_chat","stream":"yes","messages":[]}`, status: 400, errType: "invalid_request_error", param: "stream", msg: "stream: wrong type (string), want a boolean"},
		{name: "no messages", token: "good", path: "/v1/chat/completions", body: `{"model":"duo_chat"}`, status: 400, errType: "invalid_request_error", param: "messages", msg: "messages: at least one message is required"},
		{name: "n > 1", token: "good", path: "/v1/chat/completions", body: chat(`,"n":2`), status: 400, errType: "invalid_request_error", param: "n", code: "unsupported_parameter", msg: "n: only one choice"},
		{name: "logprobs", token: "good", path: "/v1/chat/completions", body: chat(`,"logprobs":true`), status: 400, errType: "invalid_request_error", param: "logprobs", code: "unsupported_parameter", msg: "logprobs: "},
		{name: "json mode", token: "good", path: "/v1/chat/completions", body: chat(`,"response_format":{"type":"json_object"}`), status: 400, errType: "invalid_request_error", param: "response_format", code: "unsupported_parameter", msg: "response_format: "},
		{name: "image part", token: "good", path: "/v1/chat/completions", body: `{"model":"duo_chat","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, status: 400, errType: "invalid_request_error", param: "messages[0].content[0].type", code: "unsupported_parameter", msg: `messages[0].content[0].type: only text content parts are supported, not "image_url"`},
		{name: "zero max_tokens", token: "good", path: "/v1/chat/completions", body: chat(`,"max_tokens":0`), status: 400, errType: "invalid_request_error", param: "max_tokens", msg: "max_tokens: 0 is not a positive token count"},
		{name: "core refusal names the OpenAI field", token: "good", path: "/v1/chat/completions", body: chat(`,"top_p":1.5`), coreErr: status.Error(codes.InvalidArgument, "options.top_p: 1.5 is outside (0, 1]"), status: 400, errType: "invalid_request_error", param: "top_p", msg: "top_p: 1.5 is outside (0, 1]"},
		{name: "core refusal on max_completion_tokens", token: "good", path: "/v1/chat/completions", body: chat(`,"max_completion_tokens":99999`), coreErr: status.Error(codes.InvalidArgument, "options.max_tokens: 99999 exceeds the limit 32768"), status: 400, errType: "invalid_request_error", param: "max_completion_tokens", msg: "max_completion_tokens: 99999 exceeds the limit 32768"},
		{name: "FIM with empty prompt and suffix", token: "good", path: "/v1/completions", body: `{"model":"code_completions","prompt":"","suffix":""}`, status: 400, errType: "invalid_request_error", param: "prompt", msg: "prompt: prompt and suffix are both empty"},
		{name: "core refusal of the code context names prompt", token: "good", path: "/v1/completions", body: `{"model":"code_completions","prompt":"x"}`, coreErr: status.Error(codes.InvalidArgument, "code_context: content_above_cursor is not valid UTF-8"), status: 400, errType: "invalid_request_error", param: "prompt", msg: "prompt: content_above_cursor is not valid UTF-8"},
		{name: "suffix for chat", token: "good", path: "/v1/completions", body: `{"model":"duo_chat","prompt":"a","suffix":"b"}`, status: 400, errType: "invalid_request_error", param: "suffix", code: "unsupported_parameter", msg: "suffix: "},
		{name: "echo", token: "good", path: "/v1/completions", body: `{"model":"code_completions","prompt":"a","echo":true}`, status: 400, errType: "invalid_request_error", param: "echo", code: "unsupported_parameter", msg: "echo: "},
		{name: "body too large", token: "good", path: "/v1/chat/completions", body: chat(`,"pad":"` + strings.Repeat("x", 5000) + `"`), status: 413, errType: "invalid_request_error", code: "request_too_large", msg: "request body exceeds 4096 bytes"},
		{name: "model rate limit", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: retryInfo(codes.ResourceExhausted, "model server is rate limiting: slow down", 2500*time.Millisecond), status: 429, errType: "rate_limit_error", code: "rate_limit_exceeded", msg: "model server is rate limiting", retryAfter: "3"},
		{name: "gateway per-user limit", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: status.Error(codes.ResourceExhausted, "too many concurrent requests for this user (limit 32)"), status: 429, errType: "rate_limit_error", code: "rate_limit_exceeded", msg: "too many concurrent", retryAfter: "1"},
		{name: "model credentials rejected", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: status.Error(codes.FailedPrecondition, "model server rejected the gateway's credentials (HTTP 401): check the model's API key"), status: 502, errType: "server_error", code: "model_error", msg: "model server rejected"},
		{name: "malformed model stream", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: status.Error(codes.Internal, "model server sent a malformed stream: x"), status: 500, errType: "server_error", msg: "model server sent a malformed stream"},
		{name: "model unavailable", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: status.Error(codes.Unavailable, "model server unavailable: x"), status: 503, errType: "server_error", code: "model_unavailable", msg: "model server unavailable"},
		{name: "model timeout", token: "good", path: "/v1/chat/completions", body: chat(""), coreErr: status.Error(codes.DeadlineExceeded, "model server idle timeout"), status: 504, errType: "server_error", code: "model_timeout", msg: "model server idle timeout"},
		{name: "unknown path", token: "good", path: "/v1/embeddings", body: `{}`, status: 404, errType: "not_found_error", code: "unknown_url", msg: "Unknown request URL: POST /v1/embeddings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, &fakeCompleter{err: tt.coreErr, done: okDone()})
			a := call(t, srv, "POST", tt.path, tt.token, tt.body)
			e := decodeError(t, a.body)
			if a.status != tt.status || e.Type != tt.errType || e.Param != tt.param || e.Code != tt.code ||
				!strings.HasPrefix(e.Message, tt.msg) || a.header.Get("Retry-After") != tt.retryAfter || a.header.Get("Content-Type") != "application/json" {
				t.Errorf("got %d Retry-After %q %s\nwant %d %s param %q code %q msg %q… Retry-After %q",
					a.status, a.header.Get("Retry-After"), a.body, tt.status, tt.errType, tt.param, tt.code, tt.msg, tt.retryAfter)
			}
		})
	}
}

// apiError is an error envelope's fields, absent param and code as "".
type apiError struct{ Message, Type, Param, Code string }

// decodeError decodes an OpenAI error envelope, failing the test if body
// is not one.
func decodeError(t *testing.T, body string) apiError {
	t.Helper()
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("body %q is not an error envelope: %v", body, err)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	e := env.Error
	return apiError{Message: e.Message, Type: e.Type, Param: str(e.Param), Code: str(e.Code)}
}

// stuckCompleter streams large deltas from another goroutine, as the
// core's relay does, and gives up after a while, as the relay does with a
// client that reads nothing (its send may then still be blocked).
type stuckCompleter struct {
	fakeCompleter
	senderDone chan struct{}
}

func (s *stuckCompleter) ServeStream(ctx context.Context, _ completion.Input, send func(completion.Delta) error) (*gatewayv1.CompletionDone, error) {
	big := completion.Delta{Text: strings.Repeat("x", 64<<10)}
	go func() {
		defer close(s.senderDone)
		for send(big) == nil {
		}
	}()
	time.Sleep(300 * time.Millisecond)
	return nil, status.Error(codes.ResourceExhausted, "client is not reading the stream")
}

// A client that stops reading: the handler makes the relay's blocked
// write fail and returns, instead of hanging on the connection.
func TestStreamToAClientThatStopsReadingEnds(t *testing.T) {
	sc := &stuckCompleter{senderDone: make(chan struct{})}
	d, err := New(Config{Completer: sc})
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.NewHandler(httpapi.Config{Verifier: fakeVerifier{}, Dialects: []httpapi.Dialect{d}, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer good")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read
	select {
	case <-sc.senderDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the relay's write to a client that stopped reading is still blocked")
	}
}
