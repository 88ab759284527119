package anthropic_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/anthropic"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func toolRequest() *adapter.Request {
	par := false
	return &adapter.Request{
		Model:     adapter.Model{Identifier: "claude"},
		Feature:   feature.DuoChat,
		MaxTokens: 100,
		Tools: []adapter.Tool{
			{Name: "get_weather", Description: "Weather", Parameters: `{"type":"object","properties":{"city":{"type":"string"}}}`},
			{Name: "get_time"},
		},
		ToolChoice:        &adapter.ToolChoice{Mode: adapter.ToolChoiceFunction, Name: "get_weather"},
		ParallelToolCalls: &par,
		Messages: []adapter.Message{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: "Weather and time in Oslo?"},
			{Role: "assistant", Content: "Checking.", ToolCalls: []adapter.ToolCall{
				{ID: "toolu_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`},
				{ID: "toolu_2", Name: "get_time", Arguments: ``},
			}},
			{Role: "tool", ToolCallID: "toolu_1", Content: "-3C"},
			{Role: "tool", ToolCallID: "toolu_2", Content: "14:00"},
			{Role: "user", Content: "Thanks"},
		},
	}
}

func TestBodyTranslatesTools(t *testing.T) {
	b, err := anthropic.Body(toolRequest())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"claude","max_tokens":100,"system":"Be brief.","messages":[` +
		`{"role":"user","content":"Weather and time in Oslo?"},` +
		`{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Oslo"}},{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}]},` +
		`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"-3C"},{"type":"tool_result","tool_use_id":"toolu_2","content":"14:00"}]},` +
		`{"role":"user","content":"Thanks"}],"stream":true,` +
		`"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},{"name":"get_time","input_schema":{"type":"object"}}],` +
		`"tool_choice":{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}}`
	if string(b) != want {
		t.Fatalf("body\n got %s\nwant %s", b, want)
	}
	for _, tc := range []struct {
		choice *adapter.ToolChoice
		par    *bool
		want   string
	}{
		{nil, nil, `"tools":[`},
		{&adapter.ToolChoice{Mode: adapter.ToolChoiceAuto}, nil, `"tool_choice":{"type":"auto"}`},
		{&adapter.ToolChoice{Mode: adapter.ToolChoiceRequired}, nil, `"tool_choice":{"type":"any"}`},
		{&adapter.ToolChoice{Mode: adapter.ToolChoiceNone}, new(bool), `"tool_choice":{"type":"none"}`},
		{nil, new(bool), `"tool_choice":{"type":"auto","disable_parallel_tool_use":true}`},
	} {
		req := toolRequest()
		req.ToolChoice, req.ParallelToolCalls = tc.choice, tc.par
		b, err := anthropic.Body(req)
		if err != nil || !strings.Contains(string(b), tc.want) || (tc.choice == nil && tc.par == nil && strings.Contains(string(b), "tool_choice")) {
			t.Errorf("choice %+v parallel %v: %s, %v", tc.choice, tc.par, b, err)
		}
	}
	// Without tools the body is what it always was.
	plain, _ := anthropic.Body(&adapter.Request{Feature: feature.DuoChat, Messages: []adapter.Message{{Role: "user", Content: "hi"}}})
	if string(plain) != `{"model":"","max_tokens":1024,"messages":[{"role":"user","content":"hi"}],"stream":true}` {
		t.Fatalf("plain body %s", plain)
	}
}

func TestBodyRefusesArgumentsThatAreNotAnObject(t *testing.T) {
	for _, args := range []string{`[1]`, `{"a":`, `"x"`} {
		req := toolRequest()
		req.Messages[2].ToolCalls[1].Arguments = args
		_, err := anthropic.Body(req)
		e, ok := adapter.AsError(err)
		if !ok || e.Kind != adapter.KindBadRequest || e.Message != "messages[2].tool_calls[1].arguments: not a JSON object, which Anthropic needs as the call's input" {
			t.Errorf("arguments %s: %v", args, err)
		}
	}
}

func streamOf(t *testing.T, body string) ([]adapter.Delta, adapter.Result, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	a, _ := anthropic.New(adapter.Config{Transport: srv.Client().Transport})
	req := toolRequest()
	req.Model.Endpoint = srv.URL
	var got []adapter.Delta
	res, err := a.Stream(context.Background(), req, func(d adapter.Delta) error { got = append(got, d); return nil })
	return got, res, err
}

func ev(name, data string) string { return "event: " + name + "\ndata: " + data + "\n\n" }

func TestStreamKeepsTextAndToolUseInOrder(t *testing.T) {
	body := ev("message_start", `{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}`) +
		ev("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}`) +
		ev("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}`) +
		ev("content_block_stop", `{"type":"content_block_stop","index":0}`) +
		ev("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}`) +
		ev("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"then text"}}`) +
		ev("content_block_stop", `{"type":"content_block_stop","index":1}`) +
		ev("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}`) +
		ev("message_stop", `{"type":"message_stop"}`)
	got, res, err := streamOf(t, body)
	if err != nil || res.Finish != adapter.FinishToolCalls {
		t.Fatalf("%+v, %v", res, err)
	}
	want := []adapter.Delta{
		{ToolCalls: []adapter.ToolCallDelta{{Index: 0, ID: "t1", Name: "f"}}},
		{ToolCalls: []adapter.ToolCallDelta{{Index: 0, Arguments: `{"a":1}`}}},
		{Text: "then text"},
	}
	if len(got) != len(want) {
		t.Fatalf("deltas %+v", got)
	}
	for i := range want {
		if got[i].Text != want[i].Text || len(got[i].ToolCalls) != len(want[i].ToolCalls) || (len(want[i].ToolCalls) > 0 && got[i].ToolCalls[0] != want[i].ToolCalls[0]) {
			t.Fatalf("delta %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestStreamRefusesInputForABlockThatIsNotAToolUse(t *testing.T) {
	body := ev("message_start", `{"type":"message_start","message":{"usage":{"input_tokens":5}}}`) +
		ev("content_block_delta", `{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}`) +
		ev("message_stop", `{"type":"message_stop"}`)
	_, _, err := streamOf(t, body)
	if e, ok := adapter.AsError(err); !ok || e.Kind != adapter.KindMalformed || !strings.Contains(e.Message, "content block 3, which is not a tool_use block") {
		t.Fatalf("error %v, want malformed", err)
	}
}
