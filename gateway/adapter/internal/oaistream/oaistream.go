// Package oaistream speaks the OpenAI-compatible streaming wire format that
// the openai and azure adapters share: the request body for chat and text
// completions, and the decoder for their SSE chunk streams.
package oaistream

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
	"github.com/airlock-dev/airlock/gateway/adapter/sse"
)

// Mode selects which endpoint's chunks are decoded.
type Mode int

// Modes.
const (
	Chat Mode = iota // /chat/completions: choices[0].delta.content
	Text             // /completions: choices[0].text
)

type message struct {
	Role       string         `json:"role"`
	Content    string         `json:"content"`
	ToolCalls  []wireToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type body struct {
	Model         string         `json:"model,omitempty"`
	Messages      []message      `json:"messages,omitempty"`
	Prompt        *string        `json:"prompt,omitempty"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float32       `json:"temperature,omitempty"`
	TopP          *float32       `json:"top_p,omitempty"`
	Stop          []string       `json:"stop,omitempty"`
	// Tool calling (toolcalls.go); bodies with any of these are encoded
	// by encoding/json.
	Tools             []wireTool      `json:"tools,omitempty"`
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
}

// ChatBody returns the JSON body of a streaming chat completion request for
// model with msgs and req's generation options and tools. includeUsage asks
// for the final usage chunk (stream_options.include_usage).
func ChatBody(req *adapter.Request, model string, msgs []adapter.Message, includeUsage bool) ([]byte, error) {
	b := newBody(req, model, req.Stop, includeUsage)
	b.Messages = make([]message, len(msgs))
	for i, m := range msgs {
		b.Messages[i] = wireMessage(m)
	}
	if err := b.setTools(req); err != nil {
		return nil, err
	}
	if b.hasTools() {
		v := *b // a copy escapes to encoding/json, b stays on the stack
		return json.Marshal(&v)
	}
	return appendBody(make([]byte, 0, b.size()), b)
}

// TextBody returns the JSON body of a streaming text completion request with
// prompt; stop is the full list of stop sequences.
func TextBody(req *adapter.Request, model, prompt string, stop []string, includeUsage bool) ([]byte, error) {
	b := newBody(req, model, stop, includeUsage)
	b.Prompt = &prompt
	return appendBody(make([]byte, 0, b.size()), b)
}

// size estimates the encoded length so the body is written in one
// allocation (escapes may still grow it).
func (b *body) size() int {
	n := 160 + len(b.Model)
	for _, m := range b.Messages {
		n += 32 + len(m.Role) + len(m.Content)
	}
	if b.Prompt != nil {
		n += len(*b.Prompt)
	}
	for _, s := range b.Stop {
		n += 3 + len(s)
	}
	return n + n/4
}

func newBody(req *adapter.Request, model string, stop []string, includeUsage bool) *body {
	b := &body{Model: model, Stream: true, MaxTokens: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, Stop: stop}
	if includeUsage {
		b.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	return b
}

// chunk holds only the fields the gateway needs; encoding/json skips the rest
// (ids, logprobs, content filter results, timings) without allocating.
type chunk struct {
	Choices []choice        `json:"choices"`
	Usage   *usage          `json:"usage"`
	Error   json.RawMessage `json:"error"`
}

type choice struct {
	Index        int     `json:"index"`
	Delta        delta   `json:"delta"`
	Text         content `json:"text"`
	FinishReason string  `json:"finish_reason"`
}

type delta struct {
	Content   content         `json:"content"`
	ToolCalls []toolCallChunk `json:"tool_calls"`
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// content is a text field that may be a string, null, or (Mistral) an array
// of typed parts of which only {"type":"text"} parts count.
type content string

func (c *content) UnmarshalJSON(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		// No escapes means the bytes are the string (the outer decoder
		// has validated the document already).
		if inner := b[1 : len(b)-1]; plain(inner) {
			*c = content(inner)
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = content(s)
	case '[':
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(b, &parts); err != nil {
			return err
		}
		var s []byte
		for _, p := range parts {
			if p.Type == "text" {
				s = append(s, p.Text...)
			}
		}
		*c = content(s)
	}
	return nil // null, numbers, objects: no text
}

// plain reports whether a JSON string's inner bytes are its value: no
// escapes, no control characters, valid UTF-8.
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}

// unset marks the reusable usage value so a chunk without "usage" can be
// told from one with it.
const unset = -1

// Decoder decodes one OpenAI-compatible stream. Its buffers are reused across
// chunks, so a steady stream costs only the text strings it emits.
type Decoder struct {
	mode Mode
	c    chunk
	u    usage
	fast fastChunk
}

// NewDecoder returns a decoder for mode. In-stream error messages are
// scrubbed by the Body (upstream.Body.StreamError), which knows the key.
func NewDecoder(mode Mode) *Decoder {
	return &Decoder{mode: mode}
}

// Decode reads resp to the end of the stream, calling emit with each
// non-empty text or tool-call delta of choice 0. It returns the normalized finish and the
// last usage the server reported once [DONE] arrives. In-stream errors
// (an `error` member, an `event: error` frame, a llama.cpp `error:` line),
// an abort finish, malformed chunks and a body that ends before [DONE] are
// returned as *adapter.Error; an error from emit is returned as is.
func (d *Decoder) Decode(resp upstream.Body, maxEvent int, emit func(adapter.Delta) error) (adapter.Result, error) {
	dec := sse.NewDecoder(resp, maxEvent)
	var raw string
	var last *usage
	for {
		data, err := upstream.NextData(dec, resp, maxEvent)
		if err != nil {
			return adapter.Result{}, err
		}
		if string(data) == "[DONE]" {
			break
		}
		text, finish, calls, u, err := d.parse(data, resp)
		if err != nil {
			return adapter.Result{}, err
		}
		if text != "" || calls != nil {
			if err := emit(adapter.Delta{Text: text, ToolCalls: calls}); err != nil {
				return adapter.Result{}, err
			}
		}
		if finish != "" {
			raw = finish // sticky: later null finishes do not clear it
		}
		if u != nil {
			if last == nil {
				last = new(usage)
			}
			*last = *u
		}
	}
	f, ok := Finish(raw)
	if !ok {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindStreamError, Type: raw,
			Message: "model server aborted the generation", Retryable: true}
	}
	res := adapter.Result{Finish: f, RawFinish: raw}
	if last != nil {
		res.Usage = &adapter.Usage{PromptTokens: last.PromptTokens, CompletionTokens: last.CompletionTokens}
	}
	return res, nil
}

// decodeChunk decodes data into d.c: in one pass with the chunk-shaped
// decoder (fastchunk.go) when it can, else with encoding/json, whose results
// the fast path reproduces exactly (FuzzFastChunkMatchesStdlib).
func (d *Decoder) decodeChunk(data []byte) error {
	d.reset()
	if d.fast.decode(data, &d.c) {
		return nil
	}
	d.reset()
	return json.Unmarshal(data, &d.c)
}

// reset prepares the reusable chunk for the next decode.
func (d *Decoder) reset() {
	c := &d.c
	// encoding/json reuses slice elements without zeroing them; clear them
	// so no field leaks from one chunk into the next.
	clear(c.Choices[:cap(c.Choices)])
	c.Choices = c.Choices[:0]
	c.Error = c.Error[:0]
	d.u = usage{PromptTokens: unset, CompletionTokens: unset}
	c.Usage = &d.u
}

// parse decodes one chunk into the reusable buffers.
func (d *Decoder) parse(data []byte, resp upstream.Body) (text, finish string, calls []adapter.ToolCallDelta, u *usage, err error) {
	c := &d.c
	if err := d.decodeChunk(data); err != nil {
		return "", "", nil, nil, upstream.Malformed("invalid JSON chunk", err)
	}
	if upstream.HasError(c.Error) {
		return "", "", nil, nil, resp.StreamError(data)
	}
	if c.Usage != nil && (d.u.PromptTokens != unset || d.u.CompletionTokens != unset) {
		u = &d.u
		u.PromptTokens, u.CompletionTokens = max(u.PromptTokens, 0), max(u.CompletionTokens, 0)
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue
		}
		if d.mode == Text {
			text = string(ch.Text)
		} else {
			text = string(ch.Delta.Content)
			if len(ch.Delta.ToolCalls) > 0 {
				if calls, err = toolCallDeltas(ch.Delta.ToolCalls); err != nil {
					return "", "", nil, nil, err
				}
			}
		}
		finish = ch.FinishReason
		break
	}
	return text, finish, calls, u, nil
}

// Finish normalizes an OpenAI-compatible finish_reason. ok is false for
// reasons that mean the generation failed (vLLM abort, Mistral error). An
// empty or unknown reason on a completed stream counts as stop.
func Finish(raw string) (f adapter.Finish, ok bool) {
	switch raw {
	case "length", "model_length":
		return adapter.FinishLength, true
	case "tool_calls", "function_call":
		return adapter.FinishToolCalls, true
	case "content_filter":
		return adapter.FinishContentFilter, true
	case "abort", "error":
		return "", false
	}
	return adapter.FinishStop, true
}
