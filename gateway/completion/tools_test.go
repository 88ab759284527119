package completion

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// toolFake is a fakeAdapter whose provider takes tools.
type toolFake struct{ *fakeAdapter }

func (toolFake) TakesTools() bool { return true }

func toolTarget(name string) catalog.Target {
	t := target(name)
	t.Model.Provider = "fake_tools"
	return t
}

// startTools serves targets with fa behind both providers: "fake" (no
// tools) and "fake_tools".
func startTools(t *testing.T, fa *fakeAdapter, lim Limits, targets ...catalog.Target) gatewayv1.CompletionServiceClient {
	t.Helper()
	return start(t, Config{Router: fakeRouter{targets}, Authorize: allowAll, Limits: lim, Adapters: map[string]adapter.Constructor{
		"fake":       func(adapter.Config) (adapter.Adapter, error) { return fa, nil },
		"fake_tools": func(adapter.Config) (adapter.Adapter, error) { return toolFake{fa}, nil },
	}})
}

var weatherTool = &gatewayv1.Tool{Name: "get_weather", Description: "Weather by city", ParametersJson: `{"type":"object","properties":{"city":{"type":"string"}}}`}

func toolChat(mod func(*gatewayv1.StreamCompletionRequest)) *gatewayv1.StreamCompletionRequest {
	r := chat("weather in Paris?")
	r.Tools = []*gatewayv1.Tool{proto.Clone(weatherTool).(*gatewayv1.Tool)}
	if mod != nil {
		mod(r)
	}
	return r
}

func TestToolFieldsAreValidatedPrecisely(t *testing.T) {
	many := make([]*gatewayv1.Tool, 129)
	for i := range many {
		many[i] = &gatewayv1.Tool{Name: "t"}
	}
	call := func(id, name, args string) *gatewayv1.ToolCall {
		return &gatewayv1.ToolCall{Id: id, Name: name, Arguments: args}
	}
	tests := []struct {
		name string
		mod  func(*gatewayv1.StreamCompletionRequest)
		code codes.Code
		msg  string
	}{
		{"too many tools", func(r *gatewayv1.StreamCompletionRequest) { r.Tools = many }, codes.InvalidArgument, "tools: 129 tools, limit 128"},
		{"empty name", func(r *gatewayv1.StreamCompletionRequest) { r.Tools = append(r.Tools, &gatewayv1.Tool{}) }, codes.InvalidArgument,
			`tools[1].name: "" must be 1-64 of A-Z, a-z, 0-9, _ and -`},
		{"name with a space", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools = append(r.Tools, &gatewayv1.Tool{Name: "a"}, &gatewayv1.Tool{Name: "rm -rf"})
		}, codes.InvalidArgument, `tools[2].name: "rm -rf" must be 1-64 of A-Z, a-z, 0-9, _ and -`},
		{"name too long", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: strings.Repeat("a", 65)}
		}, codes.InvalidArgument,
			"tools[0].name: 65 bytes, limit 64"},
		{"duplicate name", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools = append(r.Tools, &gatewayv1.Tool{Name: "get_weather"})
		}, codes.InvalidArgument,
			`tools[1].name: "get_weather" is already the name of another tool`},
		{"description too long", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: "f", Description: strings.Repeat("d", 4097)}
		}, codes.InvalidArgument, "tools[0].description: 4097 bytes, limit 4096"},
		{"description not UTF-8", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: "f", Description: "\xff"}
		}, codes.InvalidArgument,
			"tools[0].description: not valid UTF-8"},
		{"parameters not an object", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: "f", ParametersJson: `["a"]`}
		}, codes.InvalidArgument,
			"tools[0].parameters_json: must be a JSON object"},
		{"parameters not JSON", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: "f", ParametersJson: `{"a":`}
		}, codes.InvalidArgument,
			"tools[0].parameters_json: must be a JSON object"},
		{"parameters too large", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0] = &gatewayv1.Tool{Name: "f", ParametersJson: `{"d":"` + strings.Repeat("x", 65536) + `"}`}
		}, codes.InvalidArgument, "tools[0].parameters_json: 65544 bytes, limit 65536"},
		{"unknown tool choice", func(r *gatewayv1.StreamCompletionRequest) { r.ToolChoice = &gatewayv1.ToolChoice{Mode: "any"} }, codes.InvalidArgument,
			`tool_choice.mode: "any" is not one of none, auto, required, function`},
		{"tool choice names no tool", func(r *gatewayv1.StreamCompletionRequest) {
			r.ToolChoice = &gatewayv1.ToolChoice{Mode: "function", FunctionName: "get_time"}
		}, codes.InvalidArgument, `tool_choice.function_name: "get_time" is not one of the tools`},
		{"function name with another mode", func(r *gatewayv1.StreamCompletionRequest) {
			r.ToolChoice = &gatewayv1.ToolChoice{Mode: "auto", FunctionName: "get_weather"}
		}, codes.InvalidArgument, "tool_choice.function_name: only with mode function, not auto"},
		{"tool choice without tools", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools, r.ToolChoice = nil, &gatewayv1.ToolChoice{Mode: "required"}
		}, codes.InvalidArgument, "tool_choice: needs tools"},
		{"parallel tool calls without tools", func(r *gatewayv1.StreamCompletionRequest) { r.Tools, r.ParallelToolCalls = nil, ptr(true) }, codes.InvalidArgument,
			"parallel_tool_calls: needs tools"},
		{"tool message without id", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "tool", Content: "22C"})
		}, codes.InvalidArgument, "messages[1].tool_call_id: required on a tool message"},
		{"tool call id on a user message", func(r *gatewayv1.StreamCompletionRequest) { r.Messages[0].ToolCallId = "c1" }, codes.InvalidArgument,
			"messages[0].tool_call_id: only a tool message answers a tool call"},
		{"tool calls on a user message", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages[0].ToolCalls = []*gatewayv1.ToolCall{call("c1", "get_weather", "{}")}
		}, codes.InvalidArgument, "messages[0].tool_calls: only an assistant message makes tool calls"},
		{"tool call without id", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "assistant", ToolCalls: []*gatewayv1.ToolCall{call("", "get_weather", "{}")}})
		}, codes.InvalidArgument, "messages[1].tool_calls[0].id: must be 1-256 bytes of UTF-8"},
		{"tool call with a bad name", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "assistant", ToolCalls: []*gatewayv1.ToolCall{call("c1", "get_weather", "{}"), call("c2", "a.b", "{}")}})
		}, codes.InvalidArgument, `messages[1].tool_calls[1].name: "a.b" must be 1-64 of A-Z, a-z, 0-9, _ and -`},
		{"tool call arguments not UTF-8", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "assistant", ToolCalls: []*gatewayv1.ToolCall{call("c1", "get_weather", "\xff")}})
		}, codes.InvalidArgument, "messages[1].tool_calls[0].arguments: not valid UTF-8"},
		{"tool call id too long", func(r *gatewayv1.StreamCompletionRequest) {
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "tool", ToolCallId: strings.Repeat("i", 257)})
		}, codes.InvalidArgument, "messages[1].tool_call_id: 257 bytes, limit 256"},
		{"tool fields count toward the prompt bound", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools[0].Description = strings.Repeat("d", 4000)
		}, codes.ResourceExhausted, "prompt too large: 4085 bytes, limit 4000"},
		{"tool call arguments count toward the prompt bound", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools = nil
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "assistant", ToolCalls: []*gatewayv1.ToolCall{call("c1", "f", strings.Repeat("a", 3990))}})
		}, codes.ResourceExhausted, "prompt too large: 4010 bytes, limit 4000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"ok"}}}}}
			req := toolChat(tt.mod)
			var err error
			if utf8Case(req) {
				// gRPC cannot carry invalid UTF-8 in a string; the HTTP
				// dialects can, through Serve.
				svc := toolService(t, fa, Limits{MaxPromptBytes: 4000}, toolTarget("a"))
				_, err = svc.Serve(context.Background(), Input{Feature: req.GetFeature(), Messages: req.GetMessages(), Tools: req.GetTools()},
					func(Delta) error { return nil })
			} else {
				c := startTools(t, fa, Limits{MaxPromptBytes: 4000}, toolTarget("a"))
				_, _, err = collect(t, c, req)
			}
			if st, _ := status.FromError(err); st.Code() != tt.code || st.Message() != tt.msg {
				t.Fatalf("status %v %q, want %v %q", st.Code(), st.Message(), tt.code, tt.msg)
			}
			if len(fa.reqs) != 0 {
				t.Fatal("an invalid request reached the model")
			}
		})
	}
}

// utf8Case reports a request that gRPC cannot marshal.
func utf8Case(r *gatewayv1.StreamCompletionRequest) bool {
	_, err := proto.Marshal(r)
	return err != nil
}

func toolService(t *testing.T, fa *fakeAdapter, lim Limits, targets ...catalog.Target) *Service {
	t.Helper()
	svc, err := New(Config{Router: fakeRouter{targets}, Authorize: allowAll, Limits: lim, Adapters: map[string]adapter.Constructor{
		"fake":       func(adapter.Config) (adapter.Adapter, error) { return fa, nil },
		"fake_tools": func(adapter.Config) (adapter.Adapter, error) { return toolFake{fa}, nil },
	}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestToolsReachTheAdapter(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"ok"}}}}}
	c := startTools(t, fa, Limits{}, toolTarget("a"))
	req := toolChat(func(r *gatewayv1.StreamCompletionRequest) {
		r.ToolChoice = &gatewayv1.ToolChoice{Mode: "function", FunctionName: "get_weather"}
		r.ParallelToolCalls = ptr(false)
		r.Messages = append(r.Messages,
			&gatewayv1.Message{Role: "assistant", ToolCalls: []*gatewayv1.ToolCall{{Id: "c1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
			&gatewayv1.Message{Role: "tool", ToolCallId: "c1", Content: "22C"})
	})
	if _, _, err := collect(t, c, req); err != nil {
		t.Fatal(err)
	}
	got := fa.reqs[0]
	want := adapter.Request{
		Tools:             []adapter.Tool{{Name: "get_weather", Description: "Weather by city", Parameters: weatherTool.ParametersJson}},
		ToolChoice:        &adapter.ToolChoice{Mode: "function", Name: "get_weather"},
		ParallelToolCalls: ptr(false),
		Messages: []adapter.Message{{Role: "user", Content: "weather in Paris?"},
			{Role: "assistant", ToolCalls: []adapter.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"city":"Paris"}`}}},
			{Role: "tool", ToolCallID: "c1", Content: "22C"}},
	}
	if !reflect.DeepEqual(got.Tools, want.Tools) || !reflect.DeepEqual(got.ToolChoice, want.ToolChoice) ||
		!reflect.DeepEqual(got.ParallelToolCalls, want.ParallelToolCalls) || !reflect.DeepEqual(got.Messages, want.Messages) {
		t.Fatalf("adapter request %+v\nwant %+v", got, want)
	}
}

func TestToolsGoOnlyToModelsThatTakeThem(t *testing.T) {
	t.Run("a fallback that cannot take tools is skipped", func(t *testing.T) {
		fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"no"}}}, "b": {{texts: []string{"yes"}}}}}
		c := startTools(t, fa, Limits{}, target("a"), toolTarget("b"))
		text, done, err := collect(t, c, toolChat(nil))
		if err != nil || text != "yes" || done.GetModel() != "b" || fa.calls["a"] != 0 {
			t.Fatalf("text %q from %q, %v, calls %v: want only b, which takes tools", text, done.GetModel(), err, fa.calls)
		}
	})
	t.Run("a request without tools still goes to any model", func(t *testing.T) {
		fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"plain"}}}}}
		c := startTools(t, fa, Limits{}, target("a"))
		if text, _, err := collect(t, c, chat("hi")); err != nil || text != "plain" {
			t.Fatalf("%q, %v", text, err)
		}
	})
	for _, tc := range []struct {
		name string
		mod  func(*gatewayv1.StreamCompletionRequest)
		msg  string
	}{
		{"tools", nil, "tools: the model bound to duo_chat is served by provider fake, which cannot take tools (tools pass through to openai_compatible, azure_openai and anthropic models)"},
		{"a tool turn", func(r *gatewayv1.StreamCompletionRequest) {
			r.Tools = nil
			r.Messages = append(r.Messages, &gatewayv1.Message{Role: "tool", ToolCallId: "c1", Content: "22C"})
		}, "messages[1].role: the model bound to duo_chat is served by provider fake, which cannot take tools (tools pass through to openai_compatible, azure_openai and anthropic models)"},
	} {
		t.Run("refused when no model takes "+tc.name, func(t *testing.T) {
			fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"no"}}}}}
			c := startTools(t, fa, Limits{}, target("a"), target("b"))
			_, _, err := collect(t, c, toolChat(tc.mod))
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || st.Message() != tc.msg {
				t.Fatalf("status %v %q, want InvalidArgument %q", st.Code(), st.Message(), tc.msg)
			}
			if len(fa.reqs) != 0 {
				t.Fatal("the model was called")
			}
		})
	}
}

// streamed drains a stream into its messages.
func streamed(t *testing.T, c gatewayv1.CompletionServiceClient, req *gatewayv1.StreamCompletionRequest) ([]*gatewayv1.StreamCompletionResponse, error) {
	t.Helper()
	st, err := c.StreamCompletion(context.Background(), req)
	if err != nil {
		return nil, err
	}
	var out []*gatewayv1.StreamCompletionResponse
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

var toolAnswer = []adapter.Delta{
	{Text: "Checking."},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, ID: "call_1", Name: "get_weather"}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: `{"city":`}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: `"Paris"}`}}},
	{ToolCalls: []adapter.ToolCallDelta{{Index: 1, ID: "call_2", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
}

func TestStreamCompletionSendsToolCallsInOrderAndCompleteAssemblesThem(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{deltas: toolAnswer}}}}
	c := startTools(t, fa, Limits{}, toolTarget("a"))
	msgs, err := streamed(t, c, toolChat(nil))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the relay merged, the concatenation is the answer in order.
	var text strings.Builder
	var frags []string
	for _, m := range msgs {
		if len(frags) > 0 && m.GetText() != "" {
			t.Fatalf("text after tool calls: %v", msgs)
		}
		text.WriteString(m.GetText())
		for _, c := range m.GetToolCalls() {
			frags = append(frags, c.GetId()+"|"+c.GetName()+"|"+c.GetArguments())
			if c.GetIndex() > 1 {
				t.Fatalf("index %d", c.GetIndex())
			}
		}
	}
	joined := strings.Join(frags, ";")
	if text.String() != "Checking." || !strings.HasPrefix(joined, "call_1|get_weather|") ||
		!strings.Contains(strings.ReplaceAll(joined, ";||", ""), `call_1|get_weather|{"city":"Paris"}`) ||
		!strings.HasSuffix(joined, `call_2|get_weather|{"city":"Oslo"}`) {
		t.Fatalf("text %q, fragments %s", text.String(), joined)
	}
	if d := msgs[len(msgs)-1].GetDone(); d.GetFinishReason() != gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS {
		t.Fatalf("done %v, want finish TOOL_CALLS", d)
	}

	resp, err := c.Complete(context.Background(), &gatewayv1.CompleteRequest{Feature: "duo_chat", Messages: chat("x").Messages, Tools: []*gatewayv1.Tool{weatherTool}})
	if err != nil {
		t.Fatal(err)
	}
	want := []*gatewayv1.ToolCall{{Id: "call_1", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {Id: "call_2", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}
	if resp.GetText() != "Checking." || len(resp.GetToolCalls()) != 2 {
		t.Fatalf("Complete = %v", resp)
	}
	for i := range want {
		if g := resp.GetToolCalls()[i]; g.GetId() != want[i].GetId() || g.GetName() != want[i].GetName() || g.GetArguments() != want[i].GetArguments() {
			t.Fatalf("tool call %d = %v, want %v", i, g, want[i])
		}
	}
}

func TestToolCallAnswersAreBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		deltas []adapter.Delta
		lim    Limits
		noTool bool
		code   codes.Code
		msg    string
	}{
		{"arguments count toward the answer bound", []adapter.Delta{{ToolCalls: []adapter.ToolCallDelta{{Index: 0, ID: "c", Name: "f", Arguments: strings.Repeat("a", 20)}}}},
			Limits{MaxAnswerBytes: 16}, false, codes.ResourceExhausted, "answer exceeds the gateway's size limit; the rest was dropped"},
		{"at most 128 calls", []adapter.Delta{{ToolCalls: []adapter.ToolCallDelta{{Index: 128, ID: "c", Name: "f"}}}},
			Limits{}, false, codes.ResourceExhausted, "answer has more tool calls than the gateway's limit of 128; the rest was dropped"},
		{"no tool call to a request without tools", []adapter.Delta{{ToolCalls: []adapter.ToolCallDelta{{Index: 0, ID: "c", Name: "f"}}}},
			Limits{}, true, codes.Internal, "model server answered with a tool call to a request without tools"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{deltas: tc.deltas}}}}
			c := startTools(t, fa, tc.lim, toolTarget("a"))
			req := toolChat(nil)
			if tc.noTool {
				req = chat("hi")
			}
			_, _, err := collect(t, c, req)
			if st, _ := status.FromError(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("status %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}
