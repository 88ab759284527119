package oaistream

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// toolStreamFixture is a streamed answer with two parallel tool calls in
// the shape OpenAI documents for the Chat Completions API
// (https://platform.openai.com/docs/guides/function-calling, section
// "Streaming", and the API reference's chat.completion.chunk object): the
// first fragment of each call carries index, id, type and function.name
// with empty arguments; later fragments carry the index and a piece of
// function.arguments (id, type and name null or absent); the last choice
// chunk has an empty delta and finish_reason "tool_calls"; the usage chunk
// has no choices.
const toolStreamFixture = "testdata/openai_tool_calls_stream.sse"

type wantCall struct{ id, name, args string }

var fixtureCalls = []wantCall{
	{"call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", `{"location":"Paris, France"}`},
	{"call_Xk2b9QZJp4fR0aT7mN3sLw8v", "get_time", `{"tz":"Europe/Paris"}`},
}

// accumulate collects deltas as a client would: by index, id and name from
// the first fragment, arguments concatenated.
type accumulated struct {
	text   strings.Builder
	calls  []wantCall
	order  []int // index of each tool-call delta, in arrival order
	deltas int
}

func (a *accumulated) emit(t *testing.T) func(adapter.Delta) error {
	return func(d adapter.Delta) error {
		if d.Empty() {
			t.Error("empty delta emitted")
		}
		a.deltas++
		a.text.WriteString(d.Text)
		for _, c := range d.ToolCalls {
			for len(a.calls) <= c.Index {
				a.calls = append(a.calls, wantCall{})
			}
			w := &a.calls[c.Index]
			if c.ID != "" {
				if w.id != "" {
					t.Errorf("call %d: id sent twice", c.Index)
				}
				w.id = c.ID
			}
			if c.Name != "" {
				w.name += c.Name
			}
			w.args += c.Arguments
			a.order = append(a.order, c.Index)
		}
		return nil
	}
}

// splitReader returns the stream in the given piece sizes.
type splitReader struct {
	data  []byte
	sizes func() int
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes(), len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestDecodeToolCallStream(t *testing.T) {
	data, err := os.ReadFile(toolStreamFixture)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		sizes func() int
	}{
		{"whole", func() int { return len(data) }},
		{"byte by byte", func() int { return 1 }},
		{"random splits", func() int { return 1 + rng.IntN(64) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				var got accumulated
				res, err := NewDecoder(Chat).Decode(rawBody{&splitReader{data: data, sizes: tc.sizes}}, 0, got.emit(t))
				if err != nil {
					t.Fatal(err)
				}
				if res.Finish != adapter.FinishToolCalls || res.RawFinish != "tool_calls" || res.Usage == nil || res.Usage.CompletionTokens != 36 {
					t.Fatalf("result %+v, want finish tool_calls with usage", res)
				}
				if got.text.Len() != 0 {
					t.Errorf("text %q, want none", got.text.String())
				}
				if len(got.calls) != len(fixtureCalls) {
					t.Fatalf("calls %+v, want %+v", got.calls, fixtureCalls)
				}
				for i, w := range fixtureCalls {
					if got.calls[i] != w {
						t.Errorf("call %d = %+v, want %+v", i, got.calls[i], w)
					}
				}
				// 8 fragments of call 0, then 4 of call 1 (empty first
				// arguments are still a fragment: they carry id and name).
				wantOrder := []int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1}
				if len(got.order) != len(wantOrder) {
					t.Fatalf("fragment order %v, want %v", got.order, wantOrder)
				}
				for i := range wantOrder {
					if got.order[i] != wantOrder[i] {
						t.Fatalf("fragment order %v, want %v", got.order, wantOrder)
					}
				}
				if tc.name == "whole" {
					break
				}
			}
		})
	}
}

func TestDecodeToolCallsInterleavedWithText(t *testing.T) {
	stream := `data: {"choices":[{"index":0,"delta":{"content":"Let me check.","tool_calls":[]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"other-choice","function":{"name":"g"}}]}}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\ndata: [DONE]\n\n"
	var got []adapter.Delta
	res, err := NewDecoder(Chat).Decode(rawBody{strings.NewReader(stream)}, 0, func(d adapter.Delta) error { got = append(got, d); return nil })
	if err != nil || res.Finish != adapter.FinishToolCalls {
		t.Fatalf("%+v, %v", res, err)
	}
	if len(got) != 2 || got[0].Text != "Let me check." || got[0].ToolCalls != nil ||
		len(got[1].ToolCalls) != 1 || got[1].ToolCalls[0] != (adapter.ToolCallDelta{Index: 0, ID: "c1", Name: "f", Arguments: "{}"}) {
		t.Fatalf("deltas %+v: want the text, then the call of choice 0 only", got)
	}
}

func TestDecodeToolCallRefusals(t *testing.T) {
	for _, tc := range []struct{ name, chunk, msg string }{
		{"index over the bound", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":128,"id":"c","function":{"name":"f"}}]}}]}`, "tool call index 128 outside [0, 128)"},
		{"negative index", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":-1,"function":{"arguments":"x"}}]}}]}`, "tool call index -1 outside [0, 128)"},
		{"not a function", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"type":"code_interpreter","id":"c"}]}}]}`, "tool call of a type other than function"},
		{"arguments not a string", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":{"a":1}}}]}}]}`, "invalid JSON chunk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := "data: " + tc.chunk + "\n\ndata: [DONE]\n\n"
			_, err := NewDecoder(Chat).Decode(rawBody{strings.NewReader(stream)}, 0, func(adapter.Delta) error { return nil })
			e, ok := adapter.AsError(err)
			if !ok || e.Kind != adapter.KindMalformed || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("error %v, want malformed: %s", err, tc.msg)
			}
		})
	}
}

func TestChatBodyCarriesTools(t *testing.T) {
	par := false
	req := &adapter.Request{
		MaxTokens:         64,
		Tools:             []adapter.Tool{{Name: "get_weather", Description: "Weather <now>", Parameters: `{"type": "object", "properties": {"location": {"type": "string"}}}`}, {Name: "noop"}},
		ToolChoice:        &adapter.ToolChoice{Mode: adapter.ToolChoiceFunction, Name: "get_weather"},
		ParallelToolCalls: &par,
	}
	msgs := []adapter.Message{
		{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []adapter.ToolCall{{ID: "c1", Name: "get_weather", Arguments: `{"location":"Paris"}`}}},
		{Role: "tool", ToolCallID: "c1", Content: "sunny"},
	}
	b, err := ChatBody(req, "gpt", msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"gpt","messages":[{"role":"user","content":"weather?"},` +
		`{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},` +
		`{"role":"tool","content":"sunny","tool_call_id":"c1"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":64,` +
		`"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather \u003cnow\u003e","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}},` +
		`{"type":"function","function":{"name":"noop"}}],` +
		`"tool_choice":{"function":{"name":"get_weather"},"type":"function"},"parallel_tool_calls":false}`
	if string(b) != want {
		t.Fatalf("body\n got %s\nwant %s", b, want)
	}
	for _, mode := range []string{"none", "auto", "required"} {
		req := &adapter.Request{Tools: []adapter.Tool{{Name: "f"}}, ToolChoice: &adapter.ToolChoice{Mode: mode}}
		b, err := ChatBody(req, "m", msgs[:1], false)
		var got struct {
			ToolChoice string `json:"tool_choice"`
		}
		if err != nil || json.Unmarshal(b, &got) != nil || got.ToolChoice != mode {
			t.Errorf("tool_choice %s: body %s, %v", mode, b, err)
		}
	}
	// Without tool fields the body is exactly what it was (the fast encoder).
	plain, _ := ChatBody(&adapter.Request{}, "m", msgs[:1], false)
	if bytes.Contains(plain, []byte("tool")) {
		t.Fatalf("text-only body mentions tools: %s", plain)
	}
	if _, err := ChatBody(&adapter.Request{Tools: []adapter.Tool{{Name: "f", Parameters: "{"}}}, "m", msgs[:1], false); err == nil {
		t.Fatal("invalid parameters JSON encoded")
	}
}
