package openai

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/anthropic"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// toolAdapter plays deltas and records the request; takes says whether its
// provider takes tools.
type toolAdapter struct {
	deltas []adapter.Delta
	finish adapter.Finish

	mu  sync.Mutex
	got []*adapter.Request
}

func (a *toolAdapter) Stream(_ context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	a.mu.Lock()
	a.got = append(a.got, req)
	a.mu.Unlock()
	for _, d := range a.deltas {
		if err := emit(d); err != nil {
			return adapter.Result{}, err
		}
	}
	return adapter.Result{Finish: a.finish, Usage: &adapter.Usage{PromptTokens: 7, CompletionTokens: 9}}, nil
}

type takingAdapter struct{ *toolAdapter }

func (takingAdapter) TakesTools() bool { return true }

type providerRouter string

func (p providerRouter) Route(feature.Feature) ([]catalog.Target, error) {
	return []catalog.Target{{Model: adapter.Model{Name: "m", Provider: string(p)}, Trusted: []string{"127.0.0.1/32"}}}, nil
}

// newCoreServer serves the dialect on the real completion core, whose model
// is served by provider "tools" (takes tools) or "plain" (does not).
func newCoreServer(t *testing.T, provider string, ta *toolAdapter) *httptest.Server {
	t.Helper()
	svc, err := completion.New(completion.Config{Router: providerRouter(provider), Authorize: func(context.Context, feature.Feature) error { return nil },
		Attempts: 1, Limits: completion.Limits{MaxPromptBytes: 2000},
		Adapters: map[string]adapter.Constructor{
			"tools":     func(adapter.Config) (adapter.Adapter, error) { return takingAdapter{ta}, nil },
			"plain":     func(adapter.Config) (adapter.Adapter, error) { return ta, nil },
			"anthropic": anthropic.New, // the real adapter: it translates tools
		}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Completer: svc, Now: func() time.Time { return fixedNow }})
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

const weather = `{"type":"function","function":{"name":"get_weather","description":"Weather by city","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}`

func toolBody(extra string) string {
	return `{"model":"duo_chat","messages":[{"role":"user","content":"weather?"}],"tools":[` + weather + `]` + extra + `}`
}

func TestToolRequestErrorsNameTheField(t *testing.T) {
	user := `{"role":"user","content":"weather?"}`
	tests := []struct {
		name, provider, body string
		status               int
		param, code, msg     string
	}{
		{"tools not an array", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":{"a":1}}`, 400, "tools", "", "tools: want an array of tools"},
		{"tool type", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[` + weather + `,{"type":"retrieval"}]}`, 400, "tools[1].type", "",
			`tools[1].type: "retrieval" is not a supported tool type; only function tools are`},
		{"tool without function", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function"}]}`, 400, "tools[0].function", "", "tools[0].function: required"},
		{"name of the wrong type", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function","function":{"name":7}}]}`, 400, "tools[0].function.name", "",
			"tools[0].function.name: wrong type (number), want a string"},
		{"bad name (core)", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[` + weather + `,{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"no spaces"}}]}`,
			400, "tools[2].function.name", "", `tools[2].function.name: "no spaces" must be 1-64 of A-Z, a-z, 0-9, _ and -`},
		{"duplicate name (core)", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[` + weather + `,` + weather + `]}`, 400, "tools[1].function.name", "",
			`tools[1].function.name: "get_weather" is already the name of another tool`},
		{"description too long (core)", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function","function":{"name":"f","description":"` + strings.Repeat("d", 4097) + `"}}]}`,
			400, "tools[0].function.description", "", "tools[0].function.description: 4097 bytes, limit 4096"},
		{"parameters not an object", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function","function":{"name":"f","parameters":"{}"}}]}`,
			400, "tools[0].function.parameters", "", "tools[0].function.parameters: must be a JSON object (a JSON Schema)"},
		{"strict schemas", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function","function":{"name":"f","strict":true}}]}`,
			400, "tools[0].function.strict", "unsupported_parameter", "tools[0].function.strict: strict function schemas are not passed through"},
		{"tools over the prompt bound", "tools", `{"model":"duo_chat","messages":[` + user + `],"tools":[{"type":"function","function":{"name":"f","parameters":{"d":"` + strings.Repeat("x", 2000) + `"}}}]}`,
			413, "", "request_too_large", "prompt too large: 2017 bytes, limit 2000"},
		{"tool_choice value", "tools", toolBody(`,"tool_choice":"any"`), 400, "tool_choice", "", `tool_choice: "any" is not one of none, auto, required or a function object`},
		{"tool_choice shape", "tools", toolBody(`,"tool_choice":{"type":"function"}`), 400, "tool_choice", "", `tool_choice: want "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`},
		{"tool_choice names no tool (core)", "tools", toolBody(`,"tool_choice":{"type":"function","function":{"name":"get_time"}}`), 400, "tool_choice.function.name", "",
			`tool_choice.function.name: "get_time" is not one of the tools`},
		{"tool_choice required without tools (core)", "tools", `{"model":"duo_chat","messages":[` + user + `],"tool_choice":"required"}`, 400, "tool_choice", "", "tool_choice: needs tools"},
		{"tool message without tool_call_id (core)", "tools", `{"model":"duo_chat","messages":[` + user + `,{"role":"tool","content":"22C"}]}`, 400, "messages[1].tool_call_id", "",
			"messages[1].tool_call_id: required on a tool message"},
		{"tool call type", "tools", `{"model":"duo_chat","messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"x","function":{"name":"f","arguments":"{}"}}]}]}`,
			400, "messages[1].tool_calls[0].type", "", `messages[1].tool_calls[0].type: "x" is not a supported tool call type; only function calls are`},
		{"tool call arguments not a string", "tools", `{"model":"duo_chat","messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{}}}]}]}`,
			400, "messages[1].tool_calls[0].function.arguments", "", "messages[1].tool_calls[0].function.arguments: wrong type (object), want a string"},
		{"tool call name (core)", "tools", `{"model":"duo_chat","messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f.g","arguments":"{}"}}]}]}`,
			400, "messages[1].tool_calls[0].function.name", "", `messages[1].tool_calls[0].function.name: "f.g" must be 1-64 of A-Z, a-z, 0-9, _ and -`},
		{"legacy functions", "tools", `{"model":"duo_chat","messages":[` + user + `],"functions":[{"name":"f"}]}`, 400, "functions", "unsupported_parameter", "functions: the deprecated functions API is not supported; use tools"},
		{"provider cannot take tools", "plain", toolBody(""), 400, "tools", "",
			"tools: the model bound to duo_chat is served by provider plain, which cannot take tools (tools pass through to openai_compatible, azure_openai and anthropic models)"},
		{"arguments Anthropic cannot take", "anthropic", `{"model":"duo_chat","messages":[` + user + `,{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]},{"role":"tool","tool_call_id":"c","content":"1"}]}`,
			400, "messages[1].tool_calls[0].function.arguments", "", "messages[1].tool_calls[0].function.arguments: not a JSON object, which Anthropic needs as the call's input"},
		{"provider cannot take a tool turn", "plain", `{"model":"duo_chat","messages":[` + user + `,{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`,
			400, "messages[1].tool_calls", "", "messages[1].tool_calls: the model bound to duo_chat is served by provider plain, which cannot take tools"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := &toolAdapter{deltas: []adapter.Delta{{Text: "ok"}}, finish: adapter.FinishStop}
			a := call(t, newCoreServer(t, tt.provider, ta), "POST", "/v1/chat/completions", "good", tt.body)
			e := decodeError(t, a.body)
			if a.status != tt.status || e.Type != "invalid_request_error" || e.Param != tt.param || e.Code != tt.code || !strings.HasPrefix(e.Message, tt.msg) {
				t.Fatalf("got %d %s\nwant %d param %q code %q msg %q", a.status, a.body, tt.status, tt.param, tt.code, tt.msg)
			}
			if len(ta.got) != 0 {
				t.Fatal("a refused request reached the model")
			}
		})
	}
}

func TestToolFieldsPassThroughToTheCore(t *testing.T) {
	ta := &toolAdapter{deltas: []adapter.Delta{{Text: "ok"}}, finish: adapter.FinishStop}
	srv := newCoreServer(t, "tools", ta)
	a := call(t, srv, "POST", "/v1/chat/completions", "good", `{"model":"duo_chat","messages":[
		{"role":"user","content":"weather?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"22C"}],
		"tools":[`+weather+`],"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":false}`)
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	r := ta.got[0]
	if len(r.Tools) != 1 || r.Tools[0].Name != "get_weather" || r.Tools[0].Parameters != `{"type":"object","properties":{"city":{"type":"string"}}}` ||
		r.ToolChoice == nil || *r.ToolChoice != (adapter.ToolChoice{Mode: "function", Name: "get_weather"}) || r.ParallelToolCalls == nil || *r.ParallelToolCalls ||
		len(r.Messages) != 3 || len(r.Messages[1].ToolCalls) != 1 || r.Messages[1].ToolCalls[0] != (adapter.ToolCall{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}) ||
		r.Messages[2].Role != "tool" || r.Messages[2].ToolCallID != "call_1" || r.Messages[2].Content != "22C" {
		t.Fatalf("adapter request %+v", r)
	}

	// "none"/"auto" and parallel_tool_calls without tools mean their
	// absence: accepted, and a model that takes no tools still answers.
	plain := &toolAdapter{deltas: []adapter.Delta{{Text: "ok"}}, finish: adapter.FinishStop}
	a = call(t, newCoreServer(t, "plain", plain), "POST", "/v1/chat/completions", "good",
		`{"model":"duo_chat","messages":[{"role":"user","content":"hi"}],"tool_choice":"auto","parallel_tool_calls":true}`)
	if a.status != 200 || plain.got[0].HasToolFields() {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

var toolDeltas = []adapter.Delta{
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, ID: "call_1", Name: "get_weather"}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: `{"city":`}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: `"Paris"}`}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 1, Name: "get_time", Arguments: `{}`}}}, // a server that sends no id
}

func TestStreamedToolCallsInOpenAIsShape(t *testing.T) {
	fc := &fakeCompleter{texts: []string{"Checking."}, deltas: toolDeltas,
		done: &gatewayv1.CompletionDone{FinishReason: gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS, Model: "m"}}
	a := call(t, newServer(t, fc), "POST", "/v1/chat/completions", "good", toolBody(`,"stream":true`))
	head := `data: {"id":"chatcmpl-req-1","object":"chat.completion.chunk","created":1767225600,"model":"duo_chat","choices":[{"index":0,"delta":`
	tail := `,"logprobs":null,"finish_reason":null}]}` + "\n\n"
	want := head + `{"role":"assistant","content":"Checking."}` + tail +
		head + `{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}` + tail +
		head + `{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}` + tail +
		head + `{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}` + tail +
		head + `{"tool_calls":[{"index":1,"id":"call_chatcmpl-req-1_1","type":"function","function":{"name":"get_time","arguments":"{}"}}]}` + tail +
		head + `{},"logprobs":null,"finish_reason":"tool_calls"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	if a.status != 200 || a.body != want {
		t.Fatalf("answer %d\n%s\nwant\n%s", a.status, a.body, want)
	}
	if in := fc.last(); len(in.Tools) != 1 || in.Tools[0].GetName() != "get_weather" {
		t.Fatalf("core input tools %v", in.Tools)
	}

	// Without text the first chunk carries the role with the first call.
	fc = &fakeCompleter{deltas: toolDeltas[:1], done: &gatewayv1.CompletionDone{FinishReason: gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS}}
	a = call(t, newServer(t, fc), "POST", "/v1/chat/completions", "good", toolBody(`,"stream":true`))
	if !strings.HasPrefix(a.body, head+`{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`) {
		t.Fatalf("first chunk: %s", a.body)
	}
}

func TestNonStreamedToolCallsAreAssembled(t *testing.T) {
	for _, tc := range []struct {
		name  string
		texts []string
		want  string
	}{
		{"content null without text", nil, `"content":null`},
		{"content with text", []string{"Checking."}, `"content":"Checking."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := &fakeCompleter{texts: tc.texts, deltas: toolDeltas,
				done: &gatewayv1.CompletionDone{FinishReason: gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS, Usage: &gatewayv1.Usage{PromptTokens: 1, CompletionTokens: 2}}}
			a := call(t, newServer(t, fc), "POST", "/v1/chat/completions", "good", toolBody(""))
			want := `{"id":"chatcmpl-req-1","object":"chat.completion","created":1767225600,"model":"duo_chat","choices":[{"index":0,"message":{"role":"assistant",` + tc.want + `,"refusal":null,` +
				`"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
				`{"id":"call_chatcmpl-req-1_1","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],` +
				`"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}` + "\n"
			if a.status != http.StatusOK || a.body != want {
				t.Fatalf("answer %d\n%s\nwant\n%s", a.status, a.body, want)
			}
		})
	}
}
