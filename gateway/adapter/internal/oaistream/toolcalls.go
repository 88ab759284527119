package oaistream

import (
	"encoding/json"
	"fmt"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
)

// MaxToolCalls bounds the tool calls of one answer: a delta whose index is
// at or above it ends the stream as malformed (the completion service holds
// every adapter to the same bound).
const MaxToolCalls = 128

// Tool calling in the Chat Completions API, request side: tools,
// tool_choice, parallel_tool_calls, assistant turns with tool_calls and
// tool turns with tool_call_id. A body that carries any of them is encoded
// with encoding/json (appendBody covers the text-only shape of the hot
// path); the omitempty fields leave text-only bodies unchanged.

type wireTool struct {
	Type     string       `json:"type"`
	Function wireFunction `json:"function"`
}

type wireFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type wireToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"`
	Function wireFunctionCall `json:"function"`
}

type wireFunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// hasTools reports whether b must be encoded with encoding/json.
func (b *body) hasTools() bool {
	if len(b.Tools) > 0 || b.ToolChoice != nil || b.ParallelToolCalls != nil {
		return true
	}
	for _, m := range b.Messages {
		if len(m.ToolCalls) > 0 || m.ToolCallID != "" {
			return true
		}
	}
	return false
}

// wireMessage converts a turn, with its tool calls.
func wireMessage(m adapter.Message) message {
	w := message{Role: m.Role, Content: m.Content, ToolCallID: m.ToolCallID}
	if len(m.ToolCalls) > 0 {
		w.ToolCalls = make([]wireToolCall, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			w.ToolCalls[i] = wireToolCall{ID: c.ID, Type: "function", Function: wireFunctionCall{Name: c.Name, Arguments: c.Arguments}}
		}
	}
	return w
}

// setTools copies req's tools, tool choice and parallel_tool_calls into b.
func (b *body) setTools(req *adapter.Request) error {
	for _, t := range req.Tools {
		f := wireFunction{Name: t.Name, Description: t.Description}
		if t.Parameters != "" {
			if !json.Valid([]byte(t.Parameters)) {
				return fmt.Errorf("tool %s: parameters are not valid JSON", t.Name)
			}
			f.Parameters = json.RawMessage(t.Parameters)
		}
		b.Tools = append(b.Tools, wireTool{Type: "function", Function: f})
	}
	if c := req.ToolChoice; c != nil {
		var v any = c.Mode
		if c.Mode == adapter.ToolChoiceFunction {
			v = map[string]any{"type": "function", "function": map[string]string{"name": c.Name}}
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.ToolChoice = raw
	}
	b.ParallelToolCalls = req.ParallelToolCalls
	return nil
}

// Stream side: choices[0].delta.tool_calls, as OpenAI documents it
// (https://platform.openai.com/docs/guides/function-calling, "Streaming"):
// the first fragment of each call carries index, id, type and
// function.name; later fragments carry the index and a piece of
// function.arguments.

// toolCallChunk is one element of delta.tool_calls.
type toolCallChunk struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// toolCallDeltas converts a chunk's tool-call fragments. A fragment without
// an index (some servers send whole calls) takes its position in the array.
func toolCallDeltas(in []toolCallChunk) ([]adapter.ToolCallDelta, error) {
	out := make([]adapter.ToolCallDelta, 0, len(in))
	for i, c := range in {
		idx := i
		if c.Index != nil {
			idx = *c.Index
		}
		if idx < 0 || idx >= MaxToolCalls {
			return nil, upstream.Malformed(fmt.Sprintf("tool call index %d outside [0, %d)", idx, MaxToolCalls), nil)
		}
		if c.Type != "" && c.Type != "function" {
			return nil, upstream.Malformed("tool call of a type other than function", nil)
		}
		d := adapter.ToolCallDelta{Index: idx, ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments}
		if d.ID == "" && d.Name == "" && d.Arguments == "" {
			continue // an empty fragment carries nothing
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// toolCalls decodes a delta's tool_calls in the one-pass decoder: null and
// [] (which some servers send with every text delta) stay on the fast path;
// anything else is handed to encoding/json, which the tool path can afford.
func (p *fastChunk) toolCalls(v *[]toolCallChunk) bool {
	if p.null() {
		*v = nil
		return true
	}
	if p.peek() != '[' {
		return false
	}
	p.i++
	if p.peek() != ']' {
		return false
	}
	p.i++
	*v = []toolCallChunk{} // encoding/json: [] is empty, not nil
	return true
}
