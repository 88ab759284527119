package completion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/echo"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Tool bounds (documented in completion.proto). Every tool field also
// counts toward Limits.MaxPromptBytes.
const (
	maxTools           = 128
	maxToolNameLen     = 64
	maxToolDescLen     = 4096
	maxToolParamsLen   = 65536
	maxToolCallIDLen   = 256
	maxToolChoiceLen   = 16
	maxToolCallsPerMsg = 128
	// maxToolCallsPerAnswer bounds the distinct calls of one answer; a
	// delta with a higher index ends it (ResourceExhausted).
	maxToolCallsPerAnswer = 128
)

var (
	errTooManyToolCalls = errors.New("answer has more tool calls than the gateway's limit of 128; the rest was dropped")
	// errUnexpectedToolCall: an adapter reported a tool call for a request
	// that offered no tools (a model server that ignores the request).
	errUnexpectedToolCall = errors.New("model server answered with a tool call to a request without tools")
)

// checkToolBounds refuses a tool field over its bound (part of checkBounds).
func checkToolBounds(in input) error {
	over := func(field string, n, limit int) error {
		return invalid(fmt.Sprintf("%s: %d bytes, limit %d", field, n, limit))
	}
	if n := len(in.tools); n > maxTools {
		return invalid(fmt.Sprintf("tools: %d tools, limit %d", n, maxTools))
	}
	for i, t := range in.tools {
		switch {
		case len(t.GetName()) > maxToolNameLen:
			return over(fmt.Sprintf("tools[%d].name", i), len(t.GetName()), maxToolNameLen)
		case len(t.GetDescription()) > maxToolDescLen:
			return over(fmt.Sprintf("tools[%d].description", i), len(t.GetDescription()), maxToolDescLen)
		case len(t.GetParametersJson()) > maxToolParamsLen:
			return over(fmt.Sprintf("tools[%d].parameters_json", i), len(t.GetParametersJson()), maxToolParamsLen)
		}
	}
	if c := in.toolChoice; c != nil {
		if n := len(c.GetMode()); n > maxToolChoiceLen {
			return over("tool_choice.mode", n, maxToolChoiceLen)
		}
		if n := len(c.GetFunctionName()); n > maxToolNameLen {
			return over("tool_choice.function_name", n, maxToolNameLen)
		}
	}
	for i, m := range in.messages {
		if n := len(m.GetToolCallId()); n > maxToolCallIDLen {
			return over(fmt.Sprintf("messages[%d].tool_call_id", i), n, maxToolCallIDLen)
		}
		if n := len(m.GetToolCalls()); n > maxToolCallsPerMsg {
			return invalid(fmt.Sprintf("messages[%d].tool_calls: %d calls, limit %d", i, n, maxToolCallsPerMsg))
		}
		for j, c := range m.GetToolCalls() {
			if n := len(c.GetId()); n > maxToolCallIDLen {
				return over(fmt.Sprintf("messages[%d].tool_calls[%d].id", i, j), n, maxToolCallIDLen)
			}
			if n := len(c.GetName()); n > maxToolNameLen {
				return over(fmt.Sprintf("messages[%d].tool_calls[%d].name", i, j), n, maxToolNameLen)
			}
		}
	}
	return nil
}

// validToolName reports whether s is 1-64 of [A-Za-z0-9_-] (OpenAI's rule
// for function names).
func validToolName(s string) bool {
	if s == "" || len(s) > maxToolNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !toolNameByte(s[i]) {
			return false
		}
	}
	return true
}

func toolNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func badToolName(field, name string) error {
	return invalid(fmt.Sprintf("%s: %s must be 1-64 of A-Z, a-z, 0-9, _ and -", field, echo.Quote(name)))
}

// messageTools validates message i's tool fields and converts them. It
// returns the bytes they add to the prompt.
func messageTools(i int, m *gatewayv1.Message, out *adapter.Message) (int, error) {
	size := 0
	switch {
	case m.GetRole() == "tool" && m.GetToolCallId() == "":
		return 0, invalid(fmt.Sprintf("messages[%d].tool_call_id: required on a tool message", i))
	case m.GetRole() != "tool" && m.GetToolCallId() != "":
		return 0, invalid(fmt.Sprintf("messages[%d].tool_call_id: only a tool message answers a tool call", i))
	case m.GetRole() != "assistant" && len(m.GetToolCalls()) > 0:
		return 0, invalid(fmt.Sprintf("messages[%d].tool_calls: only an assistant message makes tool calls", i))
	}
	if id := m.GetToolCallId(); id != "" {
		if !utf8.ValidString(id) {
			return 0, invalid(fmt.Sprintf("messages[%d].tool_call_id: not valid UTF-8", i))
		}
		size += len(id)
		out.ToolCallID = id
	}
	for j, c := range m.GetToolCalls() {
		field := fmt.Sprintf("messages[%d].tool_calls[%d]", i, j)
		switch {
		case c.GetId() == "" || !utf8.ValidString(c.GetId()):
			return 0, invalid(field + ".id: must be 1-256 bytes of UTF-8")
		case !validToolName(c.GetName()):
			return 0, badToolName(field+".name", c.GetName())
		case !utf8.ValidString(c.GetArguments()):
			return 0, invalid(field + ".arguments: not valid UTF-8")
		}
		size += len(c.GetId()) + len(c.GetName()) + len(c.GetArguments())
		out.ToolCalls = append(out.ToolCalls, adapter.ToolCall{ID: c.GetId(), Name: c.GetName(), Arguments: c.GetArguments()})
	}
	return size, nil
}

// buildTools validates the request's tools, tool choice and
// parallel_tool_calls into req. It returns the bytes they add to the prompt.
func buildTools(in input, req *adapter.Request) (int, error) {
	size := 0
	names := make(map[string]bool, len(in.tools))
	for i, t := range in.tools {
		field := fmt.Sprintf("tools[%d]", i)
		if !validToolName(t.GetName()) {
			return 0, badToolName(field+".name", t.GetName())
		}
		if names[t.GetName()] {
			return 0, invalid(fmt.Sprintf("%s.name: %s is already the name of another tool", field, echo.Quote(t.GetName())))
		}
		names[t.GetName()] = true
		if !utf8.ValidString(t.GetDescription()) {
			return 0, invalid(field + ".description: not valid UTF-8")
		}
		if p := t.GetParametersJson(); p != "" && !jsonObject(p) {
			return 0, invalid(field + ".parameters_json: must be a JSON object")
		}
		size += len(t.GetName()) + len(t.GetDescription()) + len(t.GetParametersJson())
		req.Tools = append(req.Tools, adapter.Tool{Name: t.GetName(), Description: t.GetDescription(), Parameters: t.GetParametersJson()})
	}
	if c := in.toolChoice; c != nil {
		if len(in.tools) == 0 {
			return 0, invalid("tool_choice: needs tools")
		}
		tc := &adapter.ToolChoice{Mode: c.GetMode()}
		switch c.GetMode() {
		case adapter.ToolChoiceNone, adapter.ToolChoiceAuto, adapter.ToolChoiceRequired:
			if c.GetFunctionName() != "" {
				return 0, invalid(fmt.Sprintf("tool_choice.function_name: only with mode function, not %s", c.GetMode()))
			}
		case adapter.ToolChoiceFunction:
			if !names[c.GetFunctionName()] {
				return 0, invalid(fmt.Sprintf("tool_choice.function_name: %s is not one of the tools", echo.Quote(c.GetFunctionName())))
			}
			tc.Name = c.GetFunctionName()
		default:
			return 0, invalid(fmt.Sprintf("tool_choice.mode: %s is not one of none, auto, required, function", echo.Quote(c.GetMode())))
		}
		req.ToolChoice = tc
	}
	if in.parallelToolCalls != nil {
		if len(in.tools) == 0 {
			return 0, invalid("parallel_tool_calls: needs tools")
		}
		p := *in.parallelToolCalls
		req.ParallelToolCalls = &p
	}
	return size, nil
}

// jsonObject reports whether s is one valid JSON object.
func jsonObject(s string) bool {
	b := bytes.TrimLeft([]byte(s), " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// toolTargets keeps the targets whose adapter takes tools, for a request
// that carries tool fields. With none left the request is InvalidArgument
// naming the field and the provider of the model bound to the feature.
func (s *Service) toolTargets(f feature.Feature, req *adapter.Request, targets []catalog.Target) ([]catalog.Target, error) {
	var keep []catalog.Target
	for _, t := range targets {
		if s.takesTools(t) {
			keep = append(keep, t)
		}
	}
	if len(keep) > 0 || len(targets) == 0 {
		return keep, nil
	}
	field := "tools"
	switch {
	case len(req.Tools) > 0:
	case req.ToolChoice != nil:
		field = "tool_choice"
	case req.ParallelToolCalls != nil:
		field = "parallel_tool_calls"
	default:
		for i, m := range req.Messages {
			if len(m.ToolCalls) > 0 {
				field = fmt.Sprintf("messages[%d].tool_calls", i)
				break
			}
			if m.ToolCallID != "" || m.Role == "tool" {
				field = fmt.Sprintf("messages[%d].role", i)
				break
			}
		}
	}
	providers := make([]string, 0, len(targets))
	for _, t := range targets {
		if p := t.Model.Provider; !contains(providers, p) {
			providers = append(providers, p)
		}
	}
	return nil, invalid(fmt.Sprintf("%s: the model bound to %s is served by provider %s, which cannot take tools "+
		"(tools pass through to openai_compatible, azure_openai and anthropic models)", field, f, strings.Join(providers, ", ")))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// takesTools reports whether t's adapter implements adapter.ToolTaker and
// takes tools.
func (s *Service) takesTools(t catalog.Target) bool {
	a, err := s.adapterFor(t)
	if err != nil {
		return false
	}
	tt, ok := a.(adapter.ToolTaker)
	return ok && tt.TakesTools()
}

// answerToolCalls checks an answer's tool-call fragments: only for a request
// with tools, at most maxToolCallsPerAnswer calls. It returns the bytes they
// add to the answer.
func answerToolCalls(req *adapter.Request, calls []adapter.ToolCallDelta) (int, error) {
	n := 0
	for _, c := range calls {
		if len(req.Tools) == 0 {
			return 0, errUnexpectedToolCall
		}
		if c.Index < 0 || c.Index >= maxToolCallsPerAnswer {
			return 0, errTooManyToolCalls
		}
		n += len(c.ID) + len(c.Name) + len(c.Arguments)
	}
	return n, nil
}

// Answer aggregates a streamed answer: its text, and its tool calls
// assembled by index from their fragments (Complete and the dialects'
// non-streamed answers use it). The zero value is ready to use.
type Answer struct {
	text  strings.Builder
	calls []*answerCall
}

type answerCall struct {
	id, name string
	args     strings.Builder // fragments appended, not re-copied
}

// Add appends d to the answer; it never fails (the signature fits emit).
func (a *Answer) Add(d adapter.Delta) error {
	a.text.WriteString(d.Text)
	for _, c := range d.ToolCalls {
		if c.Index < 0 {
			continue // the core refuses these before any Answer sees them
		}
		for len(a.calls) <= c.Index {
			a.calls = append(a.calls, &answerCall{})
		}
		tc := a.calls[c.Index]
		if tc.id == "" {
			tc.id = c.ID
		}
		if tc.name == "" {
			tc.name = c.Name
		}
		tc.args.WriteString(c.Arguments)
	}
	return nil
}

// Text is the answer's text.
func (a *Answer) Text() string { return a.text.String() }

// ToolCalls are the answer's tool calls in index order (nil when none).
func (a *Answer) ToolCalls() []*gatewayv1.ToolCall {
	if len(a.calls) == 0 {
		return nil
	}
	out := make([]*gatewayv1.ToolCall, len(a.calls))
	for i, c := range a.calls {
		out[i] = &gatewayv1.ToolCall{Id: c.id, Name: c.name, Arguments: c.args.String()}
	}
	return out
}
