package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// Tool calling, request side. This file reads the JSON shapes (tools,
// tool_choice, parallel_tool_calls, assistant tool_calls, tool turns) into
// the core's fields; the core validates names, bounds and references once
// for both front doors and refuses tools for a model whose provider cannot
// take them. Its field names are mapped back to this API's by toolFields.

type toolParam struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type toolCallParam struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function *struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// typeError names the field of a JSON type error under prefix.
func typeError(prefix string, err error, shape string) *httpapi.Error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return invalidParam(prefix+"."+te.Field, "wrong type (%s), want %s", te.Value, jsonType(te.Type.Kind().String()))
	}
	return invalidParam(prefix, "want %s", shape)
}

// elements splits a JSON array into its elements.
func elements(field string, raw json.RawMessage, what string) ([]json.RawMessage, *httpapi.Error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, invalidParam(field, "want an array of %s", what)
	}
	return list, nil
}

// parseTools reads tools into the core's Tool messages.
func parseTools(raw json.RawMessage) ([]*gatewayv1.Tool, *httpapi.Error) {
	if !isSet(raw) {
		return nil, nil
	}
	list, e := elements("tools", raw, "tools")
	if e != nil {
		return nil, e
	}
	tools := make([]*gatewayv1.Tool, 0, len(list))
	for i, el := range list {
		field := fmt.Sprintf("tools[%d]", i)
		var t toolParam
		if err := json.Unmarshal(el, &t); err != nil {
			return nil, typeError(field, err, `{"type": "function", "function": {"name", "description", "parameters"}}`)
		}
		switch {
		case t.Type != "function":
			return nil, invalidParam(field+".type", "%s is not a supported tool type; only function tools are", quoteField(t.Type))
		case t.Function == nil:
			return nil, invalidParam(field+".function", "required")
		case t.Function.Strict != nil && *t.Function.Strict:
			return nil, unsupported(field+".function.strict", "strict function schemas are not passed through")
		}
		params := bytes.TrimSpace(t.Function.Parameters)
		if bytes.Equal(params, []byte("null")) {
			params = nil
		}
		if len(params) > 0 && params[0] != '{' {
			return nil, invalidParam(field+".function.parameters", "must be a JSON object (a JSON Schema)")
		}
		tools = append(tools, &gatewayv1.Tool{Name: t.Function.Name, Description: t.Function.Description, ParametersJson: string(params)})
	}
	return tools, nil
}

// parseToolChoice reads tool_choice: "none", "auto", "required" or
// {"type": "function", "function": {"name": X}}.
func parseToolChoice(raw json.RawMessage) (*gatewayv1.ToolChoice, *httpapi.Error) {
	if !isSet(raw) {
		return nil, nil
	}
	var mode string
	if err := json.Unmarshal(raw, &mode); err == nil {
		switch mode {
		case "none", "auto", "required":
			return &gatewayv1.ToolChoice{Mode: mode}, nil
		}
		return nil, invalidParam("tool_choice", "%s is not one of none, auto, required or a function object", quoteField(mode))
	}
	var obj struct {
		Type     string `json:"type"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Type != "function" || obj.Function == nil {
		return nil, invalidParam("tool_choice", `want "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	return &gatewayv1.ToolChoice{Mode: "function", FunctionName: obj.Function.Name}, nil
}

// parseToolCalls reads an assistant message's tool_calls.
func parseToolCalls(i int, raw json.RawMessage) ([]*gatewayv1.ToolCall, *httpapi.Error) {
	if !isSet(raw) {
		return nil, nil
	}
	field := fmt.Sprintf("messages[%d].tool_calls", i)
	list, e := elements(field, raw, "tool calls")
	if e != nil {
		return nil, e
	}
	calls := make([]*gatewayv1.ToolCall, 0, len(list))
	for j, el := range list {
		f := fmt.Sprintf("%s[%d]", field, j)
		var c toolCallParam
		if err := json.Unmarshal(el, &c); err != nil {
			return nil, typeError(f, err, `{"id", "type": "function", "function": {"name", "arguments"}}`)
		}
		switch {
		case c.Type != "function":
			return nil, invalidParam(f+".type", "%s is not a supported tool call type; only function calls are", quoteField(c.Type))
		case c.Function == nil:
			return nil, invalidParam(f+".function", "required")
		}
		calls = append(calls, &gatewayv1.ToolCall{Id: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
	}
	return calls, nil
}

// setTools reads the request's tool fields into in. tool_choice "none" or
// "auto" and parallel_tool_calls without tools mean what their absence
// means, so they are accepted and dropped (clients send them by default);
// "required" or a named function without tools is the core's 400.
func (c *chatRequest) setTools(in *completion.Input) *httpapi.Error {
	tools, e := parseTools(c.Tools)
	if e != nil {
		return e
	}
	choice, e := parseToolChoice(c.ToolChoice)
	if e != nil {
		return e
	}
	in.Tools = tools
	if len(tools) == 0 {
		if choice != nil && (choice.Mode == "none" || choice.Mode == "auto") {
			choice = nil
		}
		in.ToolChoice = choice
		return nil
	}
	in.ToolChoice = choice
	in.ParallelToolCalls = c.ParallelToolCalls
	return nil
}

// quoteField quotes a caller's value for a message, bounded.
func quoteField(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", strings.ToValidUTF8(s, "?"))
}

// toolFields maps the core's names of tool fields to this API's.
var toolFields = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`^tools\[(\d+)\]\.(name|description)$`), "tools[$1].function.$2"},
	{regexp.MustCompile(`^tools\[(\d+)\]\.parameters_json$`), "tools[$1].function.parameters"},
	{regexp.MustCompile(`^tool_choice\.function_name$`), "tool_choice.function.name"},
	{regexp.MustCompile(`^tool_choice\.mode$`), "tool_choice"},
	{regexp.MustCompile(`^messages\[(\d+)\]\.tool_calls\[(\d+)\]\.(name|arguments)$`), "messages[$1].tool_calls[$2].function.$3"},
}

func toolField(field string) string {
	for _, m := range toolFields {
		if m.re.MatchString(field) {
			return m.re.ReplaceAllString(field, m.repl)
		}
	}
	return field
}
