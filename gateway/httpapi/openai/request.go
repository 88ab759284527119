package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// request is a parsed chat or text completion request.
type request struct {
	model        string // as the caller named it (a feature)
	in           completion.Input
	stream       bool
	includeUsage bool
	// rename maps the core's field names in its messages to this
	// endpoint's (options.max_tokens → max_tokens, code_context → prompt).
	rename map[string]string
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// common are the fields both endpoints share.
type common struct {
	Model         string          `json:"model"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	MaxTokens     *int64          `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	Stop          json.RawMessage `json:"stop"`
	// User is accepted (OpenAI's end-user id for abuse reports); the
	// gateway's per-user limits key on the token, not on this value.
	User string `json:"user"`

	// Known fields no model behind the gateway can honour: refused when
	// set to anything but their neutral value.
	N                *int64          `json:"n"`
	LogitBias        json.RawMessage `json:"logit_bias"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	Seed             *int64          `json:"seed"`
}

type chatRequest struct {
	common
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int64          `json:"top_logprobs"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	Functions           json.RawMessage `json:"functions"`
	FunctionCall        json.RawMessage `json:"function_call"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Audio               json.RawMessage `json:"audio"`
	Modalities          []string        `json:"modalities"`
	Prediction          json.RawMessage `json:"prediction"`
}

type chatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	ToolCalls    json.RawMessage `json:"tool_calls"`
	ToolCallID   string          `json:"tool_call_id"`
	FunctionCall json.RawMessage `json:"function_call"`
}

type completionRequest struct {
	common
	Prompt   json.RawMessage `json:"prompt"`
	Suffix   *string         `json:"suffix"`
	Logprobs *int64          `json:"logprobs"`
	Echo     *bool           `json:"echo"`
	BestOf   *int64          `json:"best_of"`
}

func invalidParam(param, format string, a ...any) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusBadRequest, Param: param, Message: param + ": " + fmt.Sprintf(format, a...)}
}

func unsupported(param, why string) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusBadRequest, Param: param, Code: "unsupported_parameter",
		Message: param + ": " + why}
}

func unknownModel(name string) *httpapi.Error {
	if len(name) > 64 {
		name = name[:64] + "…"
	}
	return &httpapi.Error{Status: http.StatusNotFound, Param: "model", Code: "model_not_found",
		Message: fmt.Sprintf("The model %q does not exist or you do not have access to it. Models are features: %s",
			strings.ToValidUTF8(name, "?"), featureList())}
}

func featureList() string {
	names := make([]string, len(feature.All))
	for i, f := range feature.All {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

// decode parses body into v. Unknown fields are ignored.
func decode(body []byte, v any) *httpapi.Error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &httpapi.Error{Status: http.StatusBadRequest, Message: "the request body is empty: want a JSON object"}
	}
	err := json.Unmarshal(body, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return invalidParam(strings.TrimPrefix(typeErr.Field, "common."), "wrong type (%s), want %s", typeErr.Value, jsonType(typeErr.Type.Kind().String()))
	case errors.As(err, &typeErr):
		return &httpapi.Error{Status: http.StatusBadRequest, Message: "the request body must be a JSON object"}
	}
	return &httpapi.Error{Status: http.StatusBadRequest, Message: "the request body is not valid JSON"}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "ptr":
		return "a value of another type"
	}
	return "a number"
}

func isSet(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) > 0 && !bytes.Equal(s, []byte("null"))
}

// isEmpty reports an absent value, null, [], {} or "".
func isEmpty(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "", "null", "[]", "{}", `""`:
		return true
	}
	return false
}

// model resolves the model field to a feature: 400 when absent, 404 when
// no feature has that name.
func resolveModel(name string) (feature.Feature, *httpapi.Error) {
	if name == "" {
		return "", invalidParam("model", "required: name a feature (%s)", featureList())
	}
	f, err := feature.Parse(name)
	if err != nil {
		return "", unknownModel(name)
	}
	return f, nil
}

// refuse checks the fields both endpoints know but cannot honour.
func (c *common) refuse() *httpapi.Error {
	switch {
	case c.N != nil && *c.N != 1:
		return unsupported("n", "only one choice per request (n=1) is supported")
	case !isEmpty(c.LogitBias):
		return unsupported("logit_bias", "not supported by the models behind this gateway")
	case c.PresencePenalty != nil && *c.PresencePenalty != 0:
		return unsupported("presence_penalty", "not supported by the models behind this gateway")
	case c.FrequencyPenalty != nil && *c.FrequencyPenalty != 0:
		return unsupported("frequency_penalty", "not supported by the models behind this gateway")
	case c.Seed != nil:
		return unsupported("seed", "not supported by the models behind this gateway")
	}
	return nil
}

// options builds the generation options; maxTokens is the effective limit
// field (max_completion_tokens wins over max_tokens) and its name.
func (c *common) options(maxTokens *int64, maxName string) (*gatewayv1.GenerationOptions, *httpapi.Error) {
	o := &gatewayv1.GenerationOptions{}
	if maxTokens != nil {
		if *maxTokens < 1 || *maxTokens > math.MaxUint32 {
			return nil, invalidParam(maxName, "%d is not a positive token count", *maxTokens)
		}
		o.MaxTokens = uint32(*maxTokens)
	}
	if c.Temperature != nil {
		t := float32(*c.Temperature)
		o.Temperature = &t
	}
	if c.TopP != nil {
		p := float32(*c.TopP)
		o.TopP = &p
	}
	if isSet(c.Stop) {
		var one string
		if err := json.Unmarshal(c.Stop, &one); err == nil {
			o.Stop = []string{one}
		} else if err := json.Unmarshal(c.Stop, &o.Stop); err != nil {
			return nil, invalidParam("stop", "want a string or an array of strings")
		}
	}
	return o, nil
}

var chatRename = map[string]string{
	"options.max_tokens": "max_tokens", "options.temperature": "temperature",
	"options.top_p": "top_p", "options.stop": "stop",
}

func parseChat(body []byte) (*request, *httpapi.Error) {
	var c chatRequest
	if e := decode(body, &c); e != nil {
		return nil, e
	}
	f, e := resolveModel(c.Model)
	if e != nil {
		return nil, e
	}
	if e := c.refuse(); e != nil {
		return nil, e
	}
	const noFunctions = "the deprecated functions API is not supported; use tools"
	switch {
	case c.Logprobs != nil && *c.Logprobs:
		return nil, unsupported("logprobs", "not supported by the models behind this gateway")
	case c.TopLogprobs != nil && *c.TopLogprobs != 0:
		return nil, unsupported("top_logprobs", "not supported by the models behind this gateway")
	case !isEmpty(c.Functions):
		return nil, unsupported("functions", noFunctions)
	case isSet(c.FunctionCall) && !bytes.Equal(bytes.TrimSpace(c.FunctionCall), []byte(`"none"`)) && !bytes.Equal(bytes.TrimSpace(c.FunctionCall), []byte(`"auto"`)):
		return nil, unsupported("function_call", noFunctions)
	case isSet(c.ResponseFormat) && !textFormat(c.ResponseFormat):
		return nil, unsupported("response_format", "only {\"type\": \"text\"} is supported")
	case isSet(c.Audio):
		return nil, unsupported("audio", "audio output is not supported")
	case isSet(c.Prediction):
		return nil, unsupported("prediction", "predicted outputs are not supported")
	}
	for _, m := range c.Modalities {
		if m != "text" {
			return nil, unsupported("modalities", fmt.Sprintf("only text output is supported, not %q", m))
		}
	}
	if len(c.Messages) == 0 {
		return nil, invalidParam("messages", "at least one message is required")
	}
	msgs := make([]*gatewayv1.Message, 0, len(c.Messages))
	for i, m := range c.Messages {
		role := m.Role
		switch role {
		case "developer": // OpenAI's newer name for system instructions
			role = "system"
		case "function":
			return nil, unsupported(fmt.Sprintf("messages[%d].role", i), noFunctions)
		}
		if isSet(m.FunctionCall) {
			return nil, unsupported(fmt.Sprintf("messages[%d].function_call", i), noFunctions)
		}
		text, e := messageText(i, m.Content)
		if e != nil {
			return nil, e
		}
		calls, e := parseToolCalls(i, m.ToolCalls)
		if e != nil {
			return nil, e
		}
		msgs = append(msgs, &gatewayv1.Message{Role: role, Content: text, ToolCalls: calls, ToolCallId: m.ToolCallID})
	}
	maxTokens, maxName := c.MaxTokens, "max_tokens"
	if c.MaxCompletionTokens != nil {
		maxTokens, maxName = c.MaxCompletionTokens, "max_completion_tokens"
	}
	o, e := c.options(maxTokens, maxName)
	if e != nil {
		return nil, e
	}
	rename := chatRename
	if maxName != "max_tokens" {
		rename = map[string]string{"options.max_tokens": maxName}
		for k, v := range chatRename {
			if k != "options.max_tokens" {
				rename[k] = v
			}
		}
	}
	in := completion.Input{Feature: string(f), Messages: msgs, Options: o}
	if e := c.setTools(&in); e != nil {
		return nil, e
	}
	return &request{model: c.Model, stream: c.Stream, includeUsage: c.StreamOptions != nil && c.StreamOptions.IncludeUsage,
		in: in, rename: rename}, nil
}

func textFormat(raw json.RawMessage) bool {
	var rf struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(raw, &rf) == nil && rf.Type == "text"
}

// messageText reads a message's content: a string, or an array of text
// parts (joined by newlines). Other part types are refused.
func messageText(i int, raw json.RawMessage) (string, *httpapi.Error) {
	if !isSet(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalidParam(fmt.Sprintf("messages[%d].content", i), "want a string or an array of content parts")
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		if p.Type != "text" {
			return "", unsupported(fmt.Sprintf("messages[%d].content[%d].type", i, j), fmt.Sprintf("only text content parts are supported, not %q", p.Type))
		}
		if p.Text == nil {
			return "", invalidParam(fmt.Sprintf("messages[%d].content[%d].text", i, j), "required")
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

var textRename = map[string]string{
	"options.max_tokens": "max_tokens", "options.temperature": "temperature",
	"options.top_p": "top_p", "options.stop": "stop", "code_context": "prompt", "messages": "prompt",
}

// parseCompletion reads a text completion: prompt (and suffix) become the
// code around the cursor for the code features, so code_completions gets
// the model family's fill-in-the-middle template; for duo_chat the prompt
// is one user message.
func parseCompletion(body []byte) (*request, *httpapi.Error) {
	var c completionRequest
	if e := decode(body, &c); e != nil {
		return nil, e
	}
	f, e := resolveModel(c.Model)
	if e != nil {
		return nil, e
	}
	if e := c.refuse(); e != nil {
		return nil, e
	}
	switch {
	case c.Logprobs != nil && *c.Logprobs != 0:
		return nil, unsupported("logprobs", "not supported by the models behind this gateway")
	case c.Echo != nil && *c.Echo:
		return nil, unsupported("echo", "not supported by the models behind this gateway")
	case c.BestOf != nil && *c.BestOf != 1:
		return nil, unsupported("best_of", "only best_of=1 is supported")
	}
	prompt, e := promptText(c.Prompt)
	if e != nil {
		return nil, e
	}
	o, e := c.options(c.MaxTokens, "max_tokens")
	if e != nil {
		return nil, e
	}
	if prompt == "" && (c.Suffix == nil || *c.Suffix == "") {
		return nil, invalidParam("prompt", "prompt and suffix are both empty")
	}
	in := completion.Input{Feature: string(f), Options: o}
	if f.IsCode() {
		in.Code = &gatewayv1.CodeContext{ContentAboveCursor: prompt}
		if c.Suffix != nil {
			in.Code.ContentBelowCursor = *c.Suffix
		}
	} else {
		if c.Suffix != nil && *c.Suffix != "" {
			return nil, unsupported("suffix", fmt.Sprintf("fill-in-the-middle is for the code features, not %s", f))
		}
		in.Messages = []*gatewayv1.Message{{Role: "user", Content: prompt}}
	}
	return &request{model: c.Model, stream: c.Stream, includeUsage: c.StreamOptions != nil && c.StreamOptions.IncludeUsage,
		in: in, rename: textRename}, nil
}

// promptText reads prompt: a string, or an array holding one string.
func promptText(raw json.RawMessage) (string, *httpapi.Error) {
	if !isSet(raw) {
		return "", invalidParam("prompt", "required")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return "", invalidParam("prompt", "want a string (token arrays are not supported)")
	}
	if len(many) != 1 {
		return "", unsupported("prompt", "one prompt per request")
	}
	return many[0], nil
}

// coreParam names the field of a core InvalidArgument message ("options.
// top_p: 1.5 is outside (0, 1]") in this endpoint's terms.
func coreParam(e *httpapi.Error, rename map[string]string) {
	if e.Status != http.StatusBadRequest || e.Param != "" {
		return
	}
	field, rest, ok := strings.Cut(e.Message, ": ")
	if !ok || strings.ContainsAny(field, " \"") {
		return
	}
	for from, to := range rename {
		if field == from || strings.HasPrefix(field, from+".") || strings.HasPrefix(field, from+"[") {
			field = to + field[len(from):]
			break
		}
	}
	field = toolField(field)
	e.Param, e.Message = field, field+": "+rest
}
