package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// Tool use in the Messages API (https://docs.anthropic.com/en/docs/build-with-claude/tool-use):
// tools are {name, description, input_schema}; tool_choice is {type: auto |
// any | tool | none, name, disable_parallel_tool_use}; an assistant turn's
// calls are tool_use content blocks with the input as a JSON object; tool
// results are tool_result blocks in the next user turn. In the stream a call
// is a content_block_start with a tool_use block (id, name) followed by
// input_json_delta fragments of its input.

type toolParam struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type toolChoiceParam struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// block is a content block of a request message.
type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   *string         `json:"content,omitempty"`
}

// emptySchema is the input_schema of a tool declared without parameters.
var emptySchema = json.RawMessage(`{"type":"object"}`)

// MarshalJSON writes a message's content as a string, or as blocks when it
// has any.
func (m message) MarshalJSON() ([]byte, error) {
	if m.Blocks != nil {
		return json.Marshal(struct {
			Role    string  `json:"role"`
			Content []block `json:"content"`
		}{m.Role, m.Blocks})
	}
	return json.Marshal(struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}{m.Role, m.Content})
}

// toolFields sets r's tools and tool choice from req.
func toolFields(r *request, req *adapter.Request) {
	for _, t := range req.Tools {
		schema := emptySchema
		if t.Parameters != "" {
			schema = json.RawMessage(t.Parameters)
		}
		r.Tools = append(r.Tools, toolParam{Name: t.Name, Description: t.Description, InputSchema: schema})
	}
	if len(r.Tools) == 0 {
		return
	}
	c := &toolChoiceParam{Type: "auto"}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case adapter.ToolChoiceNone:
			c.Type = "none"
		case adapter.ToolChoiceRequired:
			c.Type = "any"
		case adapter.ToolChoiceFunction:
			c.Type, c.Name = "tool", tc.Name
		}
	}
	if p := req.ParallelToolCalls; p != nil && !*p && c.Type != "none" {
		c.DisableParallelToolUse = true
	}
	if req.ToolChoice != nil || c.DisableParallelToolUse {
		r.ToolChoice = c
	}
}

// toolMessages appends msg to msgs in the Messages API's shape: an
// assistant turn with calls becomes text and tool_use blocks; a tool
// result becomes a tool_result block of a user turn, joined with the
// results before it. Arguments that are not a JSON object cannot be sent
// (the API takes the input as an object): that is an error naming the call.
func toolMessages(msgs []message, i int, m adapter.Message) ([]message, error) {
	switch {
	case m.Role == "tool":
		content := m.Content
		b := block{Type: "tool_result", ToolUseID: m.ToolCallID, Content: &content}
		if n := len(msgs); n > 0 && msgs[n-1].Role == "user" && msgs[n-1].results {
			msgs[n-1].Blocks = append(msgs[n-1].Blocks, b)
			return msgs, nil
		}
		return append(msgs, message{Role: "user", Blocks: []block{b}, results: true}), nil
	case len(m.ToolCalls) > 0:
		var blocks []block
		if m.Content != "" {
			blocks = append(blocks, block{Type: "text", Text: m.Content})
		}
		for j, c := range m.ToolCalls {
			input := bytes.TrimSpace([]byte(c.Arguments))
			if len(input) == 0 {
				input = []byte("{}")
			}
			if input[0] != '{' || !json.Valid(input) {
				return nil, &adapter.Error{Kind: adapter.KindBadRequest,
					Message: fmt.Sprintf("messages[%d].tool_calls[%d].arguments: not a JSON object, which Anthropic needs as the call's input", i, j)}
			}
			blocks = append(blocks, block{Type: "tool_use", ID: c.ID, Name: c.Name, Input: input})
		}
		return append(msgs, message{Role: m.Role, Blocks: blocks}), nil
	}
	return append(msgs, message{Role: m.Role, Content: m.Content}), nil
}

// toolBlocks tracks the tool_use blocks of a stream: their call index by
// block index, and whether any input arrived (a call without parameters
// streams none: its arguments are then "{}").
type toolBlocks struct {
	index map[int]int
	input map[int]bool
}

// start reports a tool_use block's first fragment (id and name).
func (t *toolBlocks) start(blockIndex int, id, name string) (adapter.ToolCallDelta, error) {
	if t.index == nil {
		t.index, t.input = map[int]int{}, map[int]bool{}
	}
	if _, dup := t.index[blockIndex]; dup {
		return adapter.ToolCallDelta{}, fmt.Errorf("content block %d started twice", blockIndex)
	}
	n := len(t.index)
	t.index[blockIndex] = n
	return adapter.ToolCallDelta{Index: n, ID: id, Name: name}, nil
}

// fragment returns the input fragment of a tool_use block.
func (t *toolBlocks) fragment(blockIndex int, partial string) (adapter.ToolCallDelta, error) {
	n, ok := t.index[blockIndex]
	if !ok {
		return adapter.ToolCallDelta{}, fmt.Errorf("input_json_delta for content block %d, which is not a tool_use block", blockIndex)
	}
	if partial != "" {
		t.input[blockIndex] = true
	}
	return adapter.ToolCallDelta{Index: n, Arguments: partial}, nil
}

// stop returns the "{}" arguments of a tool_use block that streamed no
// input, and whether there are any.
func (t *toolBlocks) stop(blockIndex int) (adapter.ToolCallDelta, bool) {
	n, ok := t.index[blockIndex]
	if !ok || t.input[blockIndex] {
		return adapter.ToolCallDelta{}, false
	}
	t.input[blockIndex] = true
	return adapter.ToolCallDelta{Index: n, Arguments: "{}"}, true
}
