package gitlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeVerifier plays the strict (gRPC) rules: "Bearer good" grants every
// feature, "Bearer chat" only duo_chat; the authentication type must be
// oidc. VerifyBearer must never be used by this dialect.
type fakeVerifier struct{}

func (fakeVerifier) VerifyFrom(_ context.Context, _ string, md metadata.MD) (*auth.Identity, error) {
	authz := strings.Join(md.Get("authorization"), ",")
	if authz == "" {
		return nil, status.Error(codes.Unauthenticated, auth.MsgNoAuthorization)
	}
	if strings.Join(md.Get("x-gitlab-authentication-type"), ",") != "oidc" {
		return nil, status.Error(codes.Unauthenticated, auth.MsgBadAuthType)
	}
	switch authz {
	case "Bearer good":
		return &auth.Identity{JTI: "j1", GlobalUserID: "u1", Scopes: feature.Scopes(feature.All)}, nil
	case "Bearer chat":
		return &auth.Identity{JTI: "j2", GlobalUserID: "u2", Scopes: feature.Scopes([]feature.Feature{feature.DuoChat})}, nil
	}
	return nil, status.Error(codes.Unauthenticated, auth.MsgForbidden)
}

func (fakeVerifier) VerifyBearer(context.Context, string, metadata.MD) (*auth.Identity, error) {
	return nil, status.Error(codes.Internal, "the GitLab dialect must use the strict rules")
}

// fakeAdapter plays texts then err, and records requests.
type fakeAdapter struct {
	texts []string
	err   error

	mu   sync.Mutex
	reqs []adapter.Request
}

func (f *fakeAdapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	for _, t := range f.texts {
		if err := emit(adapter.Delta{Text: t}); err != nil {
			return adapter.Result{}, err
		}
	}
	if f.err != nil {
		return adapter.Result{}, f.err
	}
	return adapter.Result{Finish: adapter.FinishStop, Usage: &adapter.Usage{PromptTokens: 5, CompletionTokens: len(f.texts)}}, nil
}

func (f *fakeAdapter) last() adapter.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		return adapter.Request{}
	}
	return f.reqs[len(f.reqs)-1]
}

type router struct{}

func (router) Route(feature.Feature) ([]catalog.Target, error) {
	return []catalog.Target{{Model: adapter.Model{Name: "catalog-model", Family: "codestral", Provider: "fake", APIKey: "sk-catalog"}, Trusted: []string{"127.0.0.1/32"}}}, nil
}

var fixedNow = time.Unix(1767225600, 0)

func newServer(t *testing.T, fa *fakeAdapter, cfg Config) *httptest.Server {
	t.Helper()
	svc, err := completion.New(completion.Config{
		Router: router{}, Authorize: auth.Authorize, Attempts: 1,
		Caller: func(ctx context.Context) (string, string) {
			id, _ := auth.IdentityFrom(ctx)
			return id.User(), id.JTI
		},
		Adapters: map[string]adapter.Constructor{
			"fake":              func(adapter.Config) (adapter.Adapter, error) { return fa, nil },
			"openai_compatible": func(adapter.Config) (adapter.Adapter, error) { return fa, nil },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Completer = svc
	cfg.Now = func() time.Time { return fixedNow }
	cfg.Logger = zerolog.Nop()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpapi.NewHandler(httpapi.Config{Verifier: fakeVerifier{}, Dialects: []httpapi.Dialect{d}, MaxBodyBytes: 1 << 20, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

var gitlabHeaders = []string{"Authorization", "Bearer good", "X-Gitlab-Authentication-Type", "oidc"}

func post(t *testing.T, srv *httptest.Server, path, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	method := "POST"
	if strings.HasPrefix(path, "GET ") || strings.HasPrefix(path, "HEAD ") {
		method, path, _ = strings.Cut(path, " ")
	}
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const v2Body = `{"prompt_version":1,"project_path":"g/p","project_id":-1,"current_file":{"file_name":"main.py","content_above_cursor":"def hello","content_below_cursor":"\n"},"choices_count":1,"intent":"completion","telemetry":[],"context":[]}`

func TestCodeRoutesAnswerInGitLabShapes(t *testing.T) {
	fa := &fakeAdapter{texts: []string{"_world", "():"}}
	srv := newServer(t, fa, Config{})
	v3 := `{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"a.go","content_above_cursor":"package a\n","content_below_cursor":"","language_identifier":"Go","stream":STREAM,"prompt_enhancer":{"user_instruction":"write a sum function"}}}],"model_metadata":{"provider":"openai","name":"codestral"}}`
	tests := []struct {
		name, path, body string
		wantType         string
		want             string // exact body
		wantHeader       [2]string
	}{
		{name: "v2 completions, whole", path: "/v2/code/completions", body: v2Body, wantType: "application/json",
			want: `{"id":"rid","model":{"engine":"airlock","name":"catalog-model","lang":"python"},"experiments":[],"object":"text_completion","created":1767225600,"choices":[{"text":"_world():","index":0,"finish_reason":"stop"}]}` + "\n"},
		{name: "v2 alias", path: "/v2/completions", body: v2Body, wantType: "application/json",
			want: `{"id":"rid","model":{"engine":"airlock","name":"catalog-model","lang":"python"},"experiments":[],"object":"text_completion","created":1767225600,"choices":[{"text":"_world():","index":0,"finish_reason":"stop"}]}` + "\n"},
		{name: "v2 completions, streamed as raw text", path: "/v2/code/completions", body: strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":1,"stream":true`, 1),
			wantType: "text/event-stream; charset=utf-8", want: "_world():"},
		{name: "v2 generations", path: "/v2/code/generations", body: strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":2,"prompt":"add a greeting","prompt_id":"code_suggestions/generations"`, 1),
			wantType: "application/json",
			want:     `{"id":"rid","model":{"engine":"airlock","name":"catalog-model","lang":"python"},"experiments":[],"object":"text_completion","created":1767225600,"choices":[{"text":"_world():","index":0,"finish_reason":"stop"}]}` + "\n"},
		{name: "v3, whole", path: "/v3/code/completions", body: strings.Replace(v3, "STREAM", "false", 1), wantType: "application/json",
			want: `{"choices":[{"text":"_world():","index":0,"finish_reason":"stop"}],"model":{"engine":"airlock","name":"catalog-model","lang":"go"},"metadata":{"model":{"engine":"airlock","name":"catalog-model","lang":"go"},"timestamp":1767225600}}` + "\n"},
		{name: "v3, streamed as raw text", path: "/v3/code/completions", body: strings.Replace(v3, "STREAM", "true", 1),
			wantType: "text/event-stream; charset=utf-8", want: "_world():"},
		{name: "v4, SSE events", path: "/v4/code/suggestions", body: strings.Replace(v3, "STREAM", "true", 1),
			wantType: "text/event-stream; charset=utf-8", wantHeader: [2]string{"X-Streaming-Format", "sse"},
			// The relay may coalesce the model's deltas into fewer chunks.
			want: "event: stream_start\ndata: {\"metadata\":{\"model\":{\"engine\":\"airlock\",\"name\":\"\",\"lang\":\"go\"},\"timestamp\":1767225600}}\n\n" +
				"event: content_chunk\ndata: {\"choices\":[{\"delta\":{\"content\":\"_world():\"},\"index\":0}]}\n\n" +
				"event: stream_end\ndata: null\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := post(t, srv, tt.path, tt.body, append(gitlabHeaders, "X-Request-Id", "rid")...)
			if tt.wantHeader[0] != "" {
				body = mergeSSEChunks(t, body)
			}
			if code != 200 || h.Get("Content-Type") != tt.wantType || body != tt.want {
				t.Fatalf("got %d %q\n%s\nwant %q\n%s", code, h.Get("Content-Type"), body, tt.wantType, tt.want)
			}
			if tt.wantHeader[0] != "" && h.Get(tt.wantHeader[0]) != tt.wantHeader[1] {
				t.Errorf("%s = %q, want %q", tt.wantHeader[0], h.Get(tt.wantHeader[0]), tt.wantHeader[1])
			}
		})
	}
	// What reached the model: the feature, the file and the instruction.
	post(t, srv, "/v2/code/generations", strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":2,"prompt":"add a greeting"`, 1), gitlabHeaders...)
	got := fa.last()
	if got.Feature != feature.CodeGenerations || got.Code == nil || got.Code.Above != "def hello" || got.Code.Language != "python" ||
		len(got.Messages) != 1 || got.Messages[0].Content != "add a greeting" || got.Model.Name != "catalog-model" {
		t.Errorf("model saw %+v", got)
	}
}

// mergeSSEChunks checks that body is a sequence of whole SSE events (event
// line, data line, blank line) and merges consecutive content_chunk events,
// which the core's relay may or may not have coalesced.
func mergeSSEChunks(t *testing.T, body string) string {
	t.Helper()
	if !strings.HasSuffix(body, "\n\n") {
		t.Fatalf("SSE body does not end with a blank line: %q", body)
	}
	var out []string
	content := ""
	flush := func() {
		if content != "" {
			b, _ := json.Marshal(content)
			out = append(out, `event: content_chunk`+"\n"+`data: {"choices":[{"delta":{"content":`+string(b)+`},"index":0}]}`)
			content = ""
		}
	}
	for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		name, data, ok := strings.Cut(ev, "\n")
		if !ok || !strings.HasPrefix(name, "event: ") || !strings.HasPrefix(data, "data: ") || strings.Contains(data, "\n") {
			t.Fatalf("not one event line and one data line: %q", ev)
		}
		if name == "event: content_chunk" {
			var c contentChunk
			if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &c); err != nil {
				t.Fatalf("content_chunk data %q: %v", data, err)
			}
			content += c.Choices[0].Delta.Content
			continue
		}
		flush()
		out = append(out, ev)
	}
	flush()
	return strings.Join(out, "\n\n") + "\n\n"
}

func TestEmptyAnswerHasNoChoices(t *testing.T) {
	srv := newServer(t, &fakeAdapter{}, Config{})
	code, _, body := post(t, srv, "/v2/code/completions", v2Body, append(gitlabHeaders, "X-Request-Id", "rid")...)
	if code != 200 || !strings.Contains(body, `"choices":[]`) {
		t.Fatalf("got %d %s", code, body)
	}
	code, h, body := post(t, srv, "/v2/code/completions", strings.Replace(v2Body, `"prompt_version":1`, `"stream":true`, 1), gitlabHeaders...)
	if code != 200 || body != "" || h.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("empty stream: got %d %q %q", code, h.Get("Content-Type"), body)
	}
}

func TestRefusalsUseGitLabBodies(t *testing.T) {
	srv := newServer(t, &fakeAdapter{texts: []string{"x"}}, Config{})
	big := strings.Repeat("a", 100001)
	tests := []struct {
		name, path, body string
		hdr              []string
		status           int
		want             string
	}{
		{name: "no authorization", path: "/v2/code/completions", body: v2Body, status: 401, want: `{"error":"No authorization header presented"}`},
		{name: "not oidc", path: "/v2/code/completions", body: v2Body, hdr: []string{"Authorization", "Bearer good"}, status: 401,
			want: `{"error":"Invalid authentication token type - only OIDC is supported"}`},
		{name: "bad token", path: "/v2/chat/agent", body: `{}`, hdr: []string{"Authorization", "Bearer bad", "X-Gitlab-Authentication-Type", "oidc"}, status: 401,
			want: `{"error":"Forbidden by auth provider"}`},
		{name: "scope missing: completions", path: "/v2/code/completions", body: v2Body, hdr: []string{"Authorization", "Bearer chat", "X-Gitlab-Authentication-Type", "oidc"},
			status: 403, want: `{"detail":"Unauthorized to access code completions"}`},
		{name: "scope missing: generations", path: "/v2/code/generations", body: v2Body, hdr: []string{"Authorization", "Bearer chat", "X-Gitlab-Authentication-Type", "oidc"},
			status: 403, want: `{"detail":"Unauthorized to access code generations"}`},
		{name: "no current_file", path: "/v2/code/completions", body: `{"prompt_version":1}`, hdr: gitlabHeaders, status: 422, want: `{"detail":"current_file: Field required"}`},
		{name: "content over 100,000 characters", path: "/v2/code/completions", body: `{"current_file":{"file_name":"a","content_above_cursor":"` + big + `"}}`, hdr: gitlabHeaders,
			status: 422, want: `{"detail":"current_file.content_above_cursor: at most 100000 characters"}`},
		{name: "prompt_version 4", path: "/v2/code/completions", body: `{"prompt_version":4,"current_file":{"file_name":"a","content_above_cursor":"x"}}`, hdr: gitlabHeaders,
			status: 422, want: `{"detail":"prompt_version: 4 does not match any of the expected versions: 1, 2, 3"}`},
		{name: "wrong type", path: "/v2/code/completions", body: `{"stream":"yes","current_file":{}}`, hdr: gitlabHeaders, status: 422, want: `{"detail":"stream: wrong type (string)"}`},
		{name: "not JSON", path: "/v2/code/completions", body: `{`, hdr: gitlabHeaders, status: 422, want: `{"detail":"the request body is not valid JSON"}`},
		{name: "both contents empty (core)", path: "/v2/code/completions", body: `{"current_file":{"file_name":"a"}}`, hdr: gitlabHeaders, status: 422,
			want: `{"detail":"current_file: content_above_cursor and content_below_cursor are both empty"}`},
		{name: "v3 unknown component", path: "/v3/code/completions", body: `{"prompt_components":[{"type":"x","payload":{}}]}`, hdr: gitlabHeaders, status: 422,
			want: `{"detail":"prompt_components[0].type: \"x\" is not one of code_editor_completion, code_editor_generation, code_context"}`},
		{name: "v4 without components", path: "/v4/code/suggestions", body: `{"prompt_components":[]}`, hdr: gitlabHeaders, status: 422,
			want: `{"detail":"prompt_components: want 1 to 100 components, got 0"}`},
		{name: "chat without messages", path: "/v2/chat/agent", body: `{"messages":[]}`, hdr: gitlabHeaders, status: 422, want: `{"detail":"messages: at least 1 message is required"}`},
		{name: "scratchpad on a user message", path: "/v2/chat/agent", body: `{"messages":[{"role":"user","content":"hi","agent_scratchpad":[]}]}`, hdr: gitlabHeaders,
			status: 400, want: `{"detail":"agent_scratchpad can only be present when role is ASSISTANT"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := post(t, srv, tt.path, tt.body, tt.hdr...)
			if code != tt.status || strings.TrimSpace(body) != tt.want || h.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %q %s, want %d %s", code, h.Get("Content-Type"), body, tt.status, tt.want)
			}
		})
	}
}

func TestModelFailuresMapToGitLabAnswers(t *testing.T) {
	rateLimited := &adapter.Error{Kind: adapter.KindRateLimited, HTTPStatus: 429, Message: "slow down", RetryAfter: 3 * time.Second}
	down := &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 502, Message: "bad gateway sk-never-shown"}
	tests := []struct {
		name       string
		fa         *fakeAdapter
		body       string
		status     int
		want       string
		retryAfter string
	}{
		{name: "model 429", fa: &fakeAdapter{err: rateLimited}, body: v2Body, status: 429, want: `{"detail":"Too many requests. Please try again later."}`, retryAfter: "3"},
		{name: "model 5xx", fa: &fakeAdapter{err: down}, body: v2Body, status: 503, want: `{"detail":"Inference failed"}`},
		{name: "model refused", fa: &fakeAdapter{err: &adapter.Error{Kind: adapter.KindBadRequest, HTTPStatus: 400, Message: "context too long"}}, body: v2Body, status: 503, want: `{"detail":"Inference failed"}`},
		{name: "stream fails before the first byte", fa: &fakeAdapter{err: down}, body: strings.Replace(v2Body, `"prompt_version":1`, `"stream":true`, 1), status: 503, want: `{"detail":"Inference failed"}`},
		{name: "stream fails after text: ends early with 200", fa: &fakeAdapter{texts: []string{"partial"}, err: down}, body: strings.Replace(v2Body, `"prompt_version":1`, `"stream":true`, 1), status: 200, want: `partial`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.fa, Config{})
			code, h, body := post(t, srv, "/v2/code/completions", tt.body, gitlabHeaders...)
			if code != tt.status || strings.TrimSpace(body) != tt.want || h.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("got %d %s (Retry-After %q), want %d %s (%q)", code, body, h.Get("Retry-After"), tt.status, tt.want, tt.retryAfter)
			}
		})
	}
}

// ndjson splits a chat answer into its lines, each one JSON object.
func ndjson(t *testing.T, body string) []map[string]any {
	t.Helper()
	if !strings.HasSuffix(body, "\n") {
		t.Fatalf("answer does not end with a newline: %q", body)
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestChatAgentStreamsNDJSON(t *testing.T) {
	fa := &fakeAdapter{texts: []string{"Hello", " there"}}
	srv := newServer(t, fa, Config{})
	body := `{"messages":[{"role":"user","content":"What is this?","context":null,"current_file":{"file_path":"a.py","data":"x = 1","selected_code":true},
		"additional_context":[{"category":"file","id":"b.py","content":"y = 2","metadata":{}}]},
		{"role":"assistant","content":null,"agent_scratchpad":[{"action":{"thought":"t","tool":"issue_reader","tool_input":"#1"},"observation":"o"}]}],
		"options":{"agent_scratchpad":{"agent_type":"react","steps":[]}},"model_metadata":{"provider":"openai","name":"mistral","endpoint":"http://10.0.0.1/v1","api_key":"sk-x"},"unavailable_resources":["Pipelines"]}`
	code, h, out := post(t, srv, "/v2/chat/agent", body, gitlabHeaders...)
	if code != 200 || h.Get("Content-Type") != "application/x-ndjson; charset=utf-8" {
		t.Fatalf("got %d %q %s", code, h.Get("Content-Type"), out)
	}
	lines := ndjson(t, out)
	// The relay may coalesce the deltas: join them, then check the tail.
	text, i := "", 0
	for ; i < len(lines) && lines[i]["type"] == "final_answer_delta"; i++ {
		data := lines[i]["data"].(map[string]any)
		text += data["text"].(string)
		if _, has := data["finish_reason"]; has != (i == len(lines)-2) {
			t.Fatalf("finish_reason on line %d of %d:\n%s", i, len(lines), out)
		}
	}
	tail := strings.Join(strings.SplitAfter(out, "\n")[i-1:], "")
	if text != "Hello there" || tail != `{"type":"final_answer_delta","data":{"text":"","finish_reason":"stop"}}
{"type":"usage","data":{"usage":{"catalog-model":{"input_tokens":5,"output_tokens":2}}}}
` {
		t.Fatalf("got\n%s", out)
	}
	got := fa.last()
	if got.Feature != feature.DuoChat || len(got.Messages) != 2 || got.Messages[0].Role != "user" ||
		!strings.Contains(got.Messages[0].Content, "What is this?") || !strings.Contains(got.Messages[0].Content, "x = 1") ||
		!strings.Contains(got.Messages[0].Content, "y = 2") || got.Messages[1].Role != "assistant" || !strings.Contains(got.Messages[1].Content, "Observation: o") {
		t.Errorf("model saw %+v", got.Messages)
	}
	if got.Model.Name != "catalog-model" || got.Model.APIKey == "sk-x" {
		t.Errorf("the request's model answered although request models are off: %+v", got.Model.Name)
	}
}

func TestChatAgentReportsModelFailuresAsErrorEvents(t *testing.T) {
	down := &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "overloaded"}
	for _, texts := range [][]string{nil, {"par"}} {
		srv := newServer(t, &fakeAdapter{texts: texts, err: down}, Config{})
		code, _, out := post(t, srv, "/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`, gitlabHeaders...)
		lines := ndjson(t, out)
		last := lines[len(lines)-1]
		data, _ := last["data"].(map[string]any)
		if code != 200 || last["type"] != "error" || data["retryable"] != true || !strings.Contains(data["message"].(string), "model server unavailable") ||
			len(lines) != len(texts)+1 {
			t.Fatalf("texts %v: got %d %s", texts, code, out)
		}
	}
	// A refusal of the caller keeps its status.
	srv := newServer(t, &fakeAdapter{}, Config{})
	code, _, out := post(t, srv, "/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer bad", "X-Gitlab-Authentication-Type", "oidc")
	if code != 401 || strings.TrimSpace(out) != `{"error":"Forbidden by auth provider"}` {
		t.Fatalf("got %d %s", code, out)
	}
}

func TestHealthRoutesNeedNoToken(t *testing.T) {
	notReady := errors.New("no verification keys yet")
	var ready error
	srv := newServer(t, &fakeAdapter{}, Config{Ready: func() error { return ready }})
	for _, c := range []struct {
		path   string
		ready  error
		status int
		body   string
	}{
		{"HEAD /", nil, 200, ""},
		{"GET /monitoring/healthz", notReady, 200, "{}\n"},
		{"GET /monitoring/ready", nil, 200, "{}\n"},
		{"GET /monitoring/ready", notReady, 503, `{"detail":"no verification keys yet"}` + "\n"},
	} {
		ready = c.ready
		code, _, body := post(t, srv, c.path, "")
		if code != c.status || body != c.body {
			t.Errorf("%s (ready err %v): got %d %q, want %d %q", c.path, c.ready, code, body, c.status, c.body)
		}
	}
}

func TestRequestModelsNeedTheOptInAndTheAllowlist(t *testing.T) {
	flat := func(endpoint, identifier string) string {
		return strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":2,"prompt":null,"model_provider":"litellm","model_endpoint":"`+endpoint+
			`","model_name":"codestral","model_api_key":"sk-req","model_identifier":"`+identifier+`"`, 1)
	}
	allow := RequestModels{Allow: true, Networks: []string{"10.0.0.0/8"}}
	tests := []struct {
		name      string
		policy    RequestModels
		body      string
		status    int
		wantModel string // the model that answered
		want      string // body, for refusals
	}{
		{name: "off: the catalog's model answers", body: flat("http://10.1.2.3:8000/v1", "custom_openai/Codestral-22B"), status: 200, wantModel: "catalog-model"},
		{name: "on, inside the allowlist", policy: allow, body: flat("http://10.1.2.3:8000/v1/", "custom_openai/Codestral-22B"), status: 200, wantModel: "Codestral-22B"},
		{name: "on, outside the allowlist", policy: allow, body: flat("http://169.254.169.254/v1", "custom_openai/x"), status: 422,
			want: `{"detail":"model_endpoint: 169.254.169.254 is outside the networks this gateway may dial for request-supplied models"}`},
		{name: "on, not http", policy: allow, body: flat("file:///etc/passwd", "x"), status: 422,
			want: `{"detail":"model_endpoint: want an http(s) URL without credentials, query or fragment"}`},
		{name: "on, credentials in the URL", policy: allow, body: flat("http://u:p@10.1.2.3/v1", "x"), status: 422,
			want: `{"detail":"model_endpoint: want an http(s) URL without credentials, query or fragment"}`},
		{name: "on, unsupported provider", policy: allow, body: flat("http://10.1.2.3/v1", "bedrock/claude"), status: 422,
			want: `{"detail":"model_identifier: provider \"bedrock\" is not supported for request-supplied models (want custom_openai/<model>, openai/<model>, ollama/<model> or anthropic/<model>)"}`},
		{name: "on, no endpoint: the catalog's model answers", policy: allow, body: flat("", "custom_openai/x"), status: 200, wantModel: "catalog-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAdapter{texts: []string{"ok"}}
			srv := newServer(t, fa, Config{RequestModels: tt.policy})
			code, _, body := post(t, srv, "/v2/code/completions", tt.body, gitlabHeaders...)
			if code != tt.status || (tt.want != "" && strings.TrimSpace(body) != tt.want) {
				t.Fatalf("got %d %s, want %d %s", code, body, tt.status, tt.want)
			}
			if tt.wantModel == "" {
				if len(fa.reqs) != 0 {
					t.Fatalf("a model was called: %+v", fa.last().Model.Name)
				}
				return
			}
			m := fa.last().Model
			if m.Name != tt.wantModel {
				t.Fatalf("model %q answered, want %q", m.Name, tt.wantModel)
			}
			if tt.wantModel != "catalog-model" && (m.Endpoint != "http://10.1.2.3:8000/v1" || m.APIKey != "sk-req" || m.Family != "codestral" || m.Provider != "openai_compatible") {
				t.Fatalf("request model = %+v", m)
			}
		})
	}
	if _, err := New(Config{Completer: &completion.Service{}, RequestModels: RequestModels{Allow: true}}); err == nil {
		t.Error("request models allowed without networks")
	}
}

func TestModelCheck(t *testing.T) {
	const path = "/v1/prompts/model_configuration%2Fcheck"
	body := `{"inputs":{},"stream":false,"model_metadata":{"provider":"openai","name":"mistral","endpoint":"http://10.1.2.3/v1","api_key":"k","identifier":"custom_openai/m"}}`
	allow := RequestModels{Allow: true, Networks: []string{"10.0.0.0/8"}}
	tests := []struct {
		name   string
		fa     *fakeAdapter
		hdr    []string
		status int
		want   string
	}{
		{name: "model answers", fa: &fakeAdapter{texts: []string{"OK"}}, hdr: gitlabHeaders, status: 200, want: `"OK"`},
		{name: "model server says 401", fa: &fakeAdapter{err: &adapter.Error{Kind: adapter.KindAuth, HTTPStatus: 401, Message: "bad key"}}, hdr: gitlabHeaders,
			status: 421, want: `{"detail":"401: Unauthorized"}`},
		{name: "model server says 404", fa: &fakeAdapter{err: &adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 404, Message: "no such model"}}, hdr: gitlabHeaders,
			status: 421, want: `{"detail":"404: Not Found"}`},
		{name: "model server unreachable", fa: &fakeAdapter{err: &adapter.Error{Kind: adapter.KindUnavailable, Message: "connection refused"}}, hdr: gitlabHeaders,
			status: 503, want: `{"detail":"model server unavailable: connection refused"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.fa, Config{RequestModels: allow})
			for _, p := range []string{path, "/v1/prompts/model_configuration/check"} {
				code, _, out := post(t, srv, p, body, tt.hdr...)
				if code != tt.status || strings.TrimSpace(out) != tt.want {
					t.Fatalf("%s: got %d %s, want %d %s", p, code, out, tt.status, tt.want)
				}
			}
			if m := tt.fa.last().Model; m.Name != "m" || m.Endpoint != "http://10.1.2.3/v1" {
				t.Errorf("checked model %+v, want the one in model_metadata", m)
			}
		})
	}
}

// What the model sees of each prompt_version and of context[].
func TestPromptVersionsAndContextReachTheModel(t *testing.T) {
	fa := &fakeAdapter{texts: []string{"x"}}
	srv := newServer(t, fa, Config{})
	tests := []struct {
		name, body string
		want       []string // message contents, in order
	}{
		{name: "v1: the file alone", body: v2Body},
		{name: "v2 completions: the pre-rendered prompt is not used", body: strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":2,"prompt":"<rendered>"`, 1)},
		{name: "v3: the messages go before the file", body: strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":3,"prompt":[{"role":"system","content":"be terse"},{"role":"user","content":"complete"}]`, 1),
			want: []string{"be terse", "complete"}},
		{name: "context items as one message", body: strings.Replace(v2Body, `"context":[]`, `"context":[{"type":"file","name":"util.py","content":"def helper(): pass"},{"type":"snippet","name":"empty","content":" "}]`, 1),
			want: []string{"Related code from the project, for reference:\n\nfile util.py:\n```\ndef helper(): pass\n```\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, body := post(t, srv, "/v2/code/completions", tt.body, gitlabHeaders...); code != 200 {
				t.Fatalf("got %d %s", code, body)
			}
			got := fa.last()
			var contents []string
			for _, m := range got.Messages {
				contents = append(contents, m.Content)
			}
			if strings.Join(contents, "|") != strings.Join(tt.want, "|") || got.Code.Above != "def hello" {
				t.Fatalf("model saw messages %q, code %+v", contents, got.Code)
			}
		})
	}
	code, _, body := post(t, srv, "/v2/code/completions", strings.Replace(v2Body, `"prompt_version":1`, `"prompt_version":3,"prompt":"text"`, 1), gitlabHeaders...)
	if code != 422 || strings.TrimSpace(body) != `{"detail":"prompt: want a list of {role, content} messages with prompt_version 3"}` {
		t.Fatalf("v3 with a string prompt: %d %s", code, body)
	}
}

// blockingAdapter sends one text, then waits for the call to be cancelled.
type blockingAdapter struct{ cancelled chan struct{} }

func (b *blockingAdapter) Stream(ctx context.Context, _ *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	if err := emit(adapter.Delta{Text: "first"}); err != nil {
		return adapter.Result{}, err
	}
	<-ctx.Done()
	close(b.cancelled)
	return adapter.Result{}, ctx.Err()
}

// A client that goes away mid-stream cancels the model call, on every
// streamed framing.
func TestDisconnectCancelsTheModelCall(t *testing.T) {
	for _, c := range []struct{ path, body string }{
		{"/v2/code/completions", strings.Replace(v2Body, `"prompt_version":1`, `"stream":true`, 1)},
		{"/v4/code/suggestions", `{"prompt_components":[{"type":"code_editor_completion","payload":{"file_name":"a.go","content_above_cursor":"x","stream":true}}]}`},
		{"/v2/chat/agent", `{"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(c.path, func(t *testing.T) {
			ba := &blockingAdapter{cancelled: make(chan struct{})}
			svc, err := completion.New(completion.Config{Router: router{}, Authorize: auth.Authorize, Attempts: 1,
				Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return ba, nil }}})
			if err != nil {
				t.Fatal(err)
			}
			d, err := New(Config{Completer: svc, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			h, err := httpapi.NewHandler(httpapi.Config{Verifier: fakeVerifier{}, Dialects: []httpapi.Dialect{d}, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest("POST", srv.URL+c.path, strings.NewReader(c.body))
			for i := 0; i+1 < len(gitlabHeaders); i += 2 {
				req.Header.Set(gitlabHeaders[i], gitlabHeaders[i+1])
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first bytes: %d %v", resp.StatusCode, err)
			}
			resp.Body.Close()
			srv.CloseClientConnections()
			select {
			case <-ba.cancelled:
			case <-time.After(5 * time.Second):
				t.Fatal("the model call was not cancelled after the client went away")
			}
		})
	}
}
