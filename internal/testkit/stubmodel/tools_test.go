package stubmodel

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/openai"
)

// The stub's streamed tool call decodes, through the OpenAI-compatible
// adapter, into one call of the first tool with ToolArguments in several
// fragments; a tool result gets text; tool_choice picks the function or
// turns the call off.
func TestStubAnswersToolsWithADeterministicCall(t *testing.T) {
	srv := httptest.NewServer(New(Config{Tokens: 3}))
	defer srv.Close()
	a, err := openai.New(adapter.Config{Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	tools := []adapter.Tool{{Name: "get_weather", Parameters: `{"type":"object"}`}, {Name: "get_time"}}
	run := func(req *adapter.Request) (string, []adapter.ToolCallDelta, adapter.Result) {
		t.Helper()
		req.Model = adapter.Model{Endpoint: srv.URL + "/v1", Identifier: "m"}
		var text strings.Builder
		var calls []adapter.ToolCallDelta
		res, err := a.Stream(context.Background(), req, func(d adapter.Delta) error {
			text.WriteString(d.Text)
			calls = append(calls, d.ToolCalls...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return text.String(), calls, res
	}
	user := []adapter.Message{{Role: "user", Content: "weather?"}}

	text, calls, res := run(&adapter.Request{Messages: user, Tools: tools})
	var args strings.Builder
	for _, c := range calls {
		args.WriteString(c.Arguments)
	}
	if text != "" || len(calls) < 3 || calls[0].ID != ToolCallID || calls[0].Name != "get_weather" || calls[1].Name != "" ||
		args.String() != ToolArguments || res.Finish != adapter.FinishToolCalls {
		t.Fatalf("text %q, calls %+v, %+v", text, calls, res)
	}

	_, calls, _ = run(&adapter.Request{Messages: user, Tools: tools, ToolChoice: &adapter.ToolChoice{Mode: adapter.ToolChoiceFunction, Name: "get_time"}})
	if len(calls) == 0 || calls[0].Name != "get_time" {
		t.Fatalf("named tool_choice: %+v", calls)
	}
	for name, req := range map[string]*adapter.Request{
		"tool_choice none": {Messages: user, Tools: tools, ToolChoice: &adapter.ToolChoice{Mode: adapter.ToolChoiceNone}},
		"tool result": {Messages: append(user[:1:1],
			adapter.Message{Role: "assistant", ToolCalls: []adapter.ToolCall{{ID: ToolCallID, Name: "get_weather", Arguments: ToolArguments}}},
			adapter.Message{Role: "tool", ToolCallID: ToolCallID, Content: "22C"}), Tools: tools},
		"no tools": {Messages: user},
	} {
		text, calls, res := run(req)
		if text != "Hello from the " || len(calls) != 0 || res.Finish != adapter.FinishStop {
			t.Errorf("%s: text %q, calls %+v, %+v", name, text, calls, res)
		}
	}
}

func TestStubAnswersToolsNonStreamed(t *testing.T) {
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"get_weather"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Choices []struct {
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if len(got.Choices) != 1 || got.Choices[0].FinishReason != "tool_calls" || got.Choices[0].Message.Content != nil || len(got.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("%+v", got)
	}
	c := got.Choices[0].Message.ToolCalls[0]
	if c.ID != ToolCallID || c.Type != "function" || c.Function.Name != "get_weather" || c.Function.Arguments != ToolArguments {
		t.Fatalf("tool call %+v", c)
	}
}
