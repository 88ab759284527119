// Package anthropic adapts the Anthropic Messages API (POST /v1/messages)
// streamed as server-sent events with named events.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
	"github.com/airlock-dev/airlock/gateway/adapter/prompt"
	"github.com/airlock-dev/airlock/gateway/adapter/sse"
	"github.com/airlock-dev/airlock/pkg/model"
)

// Provider is the provider name this package serves.
const Provider = model.Anthropic

// Version is the anthropic-version header value sent with every request.
const Version = "2023-06-01"

// DefaultMaxTokens is sent when the request leaves MaxTokens at 0: the API
// requires max_tokens.
const DefaultMaxTokens = 1024

// Adapter streams completions from an Anthropic-compatible Messages API. The
// model's Endpoint is the base URL (e.g. https://host); a trailing /v1 is
// accepted too.
type Adapter struct {
	up *upstream.Client
}

// New returns an Adapter using cfg's HTTP client, timeouts and bounds.
func New(cfg adapter.Config) (adapter.Adapter, error) {
	return &Adapter{up: upstream.New(cfg, upstream.HeaderKey("X-Api-Key"))}, nil
}

type message struct {
	Role    string
	Content string
	Blocks  []block // tool_use or tool_result blocks (tools.go); then Content is unused
	results bool    // Blocks are tool results (more may join)
}

type request struct {
	Model         string           `json:"model"`
	MaxTokens     int              `json:"max_tokens"`
	System        string           `json:"system,omitempty"`
	Messages      []message        `json:"messages"`
	Stream        bool             `json:"stream"`
	Temperature   *float32         `json:"temperature,omitempty"`
	TopP          *float32         `json:"top_p,omitempty"`
	StopSequences []string         `json:"stop_sequences,omitempty"`
	Tools         []toolParam      `json:"tools,omitempty"`
	ToolChoice    *toolChoiceParam `json:"tool_choice,omitempty"`
}

// URL returns the Messages endpoint for a configured base URL.
func URL(endpoint string) string {
	base := strings.TrimRight(endpoint, "/")
	if strings.HasSuffix(base, "/v1") {
		return base + "/messages"
	}
	return base + "/v1/messages"
}

// Body returns the JSON request body: system messages move to the top-level
// system field (joined by blank lines), the rest stay in order; tools and
// tool turns take the Messages API's shapes (tools.go). A tool call whose
// arguments are not a JSON object is an *adapter.Error (KindBadRequest).
func Body(req *adapter.Request) ([]byte, error) {
	r := request{Model: req.Model.Identifier, MaxTokens: req.MaxTokens, Stream: true,
		Temperature: req.Temperature, TopP: req.TopP, StopSequences: req.Stop}
	if r.MaxTokens <= 0 {
		r.MaxTokens = DefaultMaxTokens
	}
	var system []string
	chat := prompt.Chat(req)
	first := len(chat) - len(req.Messages) // a code prompt's system turn comes first
	if first > 0 {
		first = 1
	}
	for i, m := range chat {
		if m.Role == "system" {
			system = append(system, m.Content)
			continue
		}
		var err error
		if r.Messages, err = toolMessages(r.Messages, i-first, m); err != nil {
			return nil, err
		}
	}
	r.System = strings.Join(system, "\n\n")
	toolFields(&r, req)
	return json.Marshal(r)
}

// Stream implements adapter.Adapter, sending the key as x-api-key when one
// is configured.
func (a *Adapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	body, err := Body(req)
	if e, ok := adapter.AsError(err); ok {
		return adapter.Result{}, e
	}
	if err != nil {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "cannot encode the request", Err: err}
	}
	h := http.Header{
		"Content-Type":      {"application/json"},
		"Accept":            {"text/event-stream"},
		"Anthropic-Version": {Version},
	}
	resp, err := a.up.Start(ctx, upstream.Request{URL: URL(req.Model.Endpoint), Header: h, Body: body, APIKey: req.Model.APIKey})
	if err != nil {
		return adapter.Result{}, err
	}
	defer resp.Close()
	co := resp.Coalesce(emit)
	return co.Finish(decode(resp, a.up.MaxEventBytes(), co.Emit))
}

type usage struct {
	InputTokens              *int `json:"input_tokens"`
	OutputTokens             *int `json:"output_tokens"`
	CacheCreationInputTokens int  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int  `json:"cache_read_input_tokens"`
}

func (u *usage) input() (int, bool) {
	if u == nil || u.InputTokens == nil {
		return 0, false
	}
	return *u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens, true
}

type event struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		Usage *usage `json:"usage"`
	} `json:"message"`
	ContentBlock *struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"content_block"`
	Delta *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// decode reads the event stream until message_stop.
func decode(resp *upstream.Response, maxEvent int, emit func(adapter.Delta) error) (adapter.Result, error) {
	dec := sse.NewDecoder(resp, maxEvent)
	var (
		raw            string
		prompt, output int
		gotIn, gotOut  bool
		tools          toolBlocks
	)
	emitCall := func(c adapter.ToolCallDelta) error {
		return emit(adapter.Delta{ToolCalls: []adapter.ToolCallDelta{c}})
	}
	for {
		ev, err := dec.Next()
		if err != nil {
			return adapter.Result{}, upstream.DecodeError(resp, err, maxEvent)
		}
		if ev.Error || string(ev.Name) == "error" {
			return adapter.Result{}, resp.StreamError(ev.Data)
		}
		data := bytes.TrimSpace(ev.Data)
		if len(data) == 0 {
			continue
		}
		var e event
		if err := json.Unmarshal(data, &e); err != nil {
			return adapter.Result{}, upstream.Malformed("invalid JSON event", err)
		}
		if e.Type == "" {
			e.Type = string(ev.Name)
		}
		if e.Type == "error" || upstream.HasError(e.Error) {
			return adapter.Result{}, resp.StreamError(data)
		}
		switch e.Type {
		case "message_start":
			if e.Message != nil {
				// output_tokens here is a placeholder; only input counts.
				prompt, gotIn = e.Message.Usage.input()
			}
		case "content_block_start":
			if b := e.ContentBlock; b != nil && b.Type == "tool_use" {
				c, err := tools.start(e.Index, b.ID, b.Name)
				if err != nil {
					return adapter.Result{}, upstream.Malformed(err.Error(), nil)
				}
				if err := emitCall(c); err != nil {
					return adapter.Result{}, err
				}
			}
		case "content_block_delta":
			if e.Delta != nil && e.Delta.Type == "text_delta" && e.Delta.Text != "" {
				if err := emit(adapter.Delta{Text: e.Delta.Text}); err != nil {
					return adapter.Result{}, err
				}
			}
			if e.Delta != nil && e.Delta.Type == "input_json_delta" {
				c, err := tools.fragment(e.Index, e.Delta.PartialJSON)
				if err != nil {
					return adapter.Result{}, upstream.Malformed(err.Error(), nil)
				}
				if c.Arguments != "" {
					if err := emitCall(c); err != nil {
						return adapter.Result{}, err
					}
				}
			}
		case "content_block_stop":
			if c, ok := tools.stop(e.Index); ok {
				if err := emitCall(c); err != nil {
					return adapter.Result{}, err
				}
			}
		case "message_delta":
			if e.Delta != nil && e.Delta.StopReason != "" {
				raw = e.Delta.StopReason
			}
			if e.Usage != nil {
				if e.Usage.OutputTokens != nil {
					output, gotOut = *e.Usage.OutputTokens, true // cumulative: last wins
				}
				if in, ok := e.Usage.input(); ok && in > 0 {
					prompt, gotIn = in, true
				}
			}
		case "message_stop":
			res := adapter.Result{Finish: Finish(raw), RawFinish: raw}
			if gotIn && gotOut {
				res.Usage = &adapter.Usage{PromptTokens: prompt, CompletionTokens: output}
			}
			return res, nil
		}
		// ping, other blocks' start/stop and future event types carry nothing.
	}
}

// Finish normalizes a Messages API stop_reason; unknown reasons count as stop.
func Finish(raw string) adapter.Finish {
	switch raw {
	case "max_tokens", "model_context_window_exceeded":
		return adapter.FinishLength
	case "tool_use":
		return adapter.FinishToolCalls
	case "refusal":
		return adapter.FinishContentFilter
	}
	return adapter.FinishStop
}

// TakesTools implements adapter.ToolTaker: tools, tool_choice,
// parallel_tool_calls and tool turns are translated to the Messages API's
// tool use (tools.go), and tool_use blocks are reported as tool calls.
func (a *Adapter) TakesTools() bool { return true }

var (
	_ adapter.Adapter   = (*Adapter)(nil)
	_ adapter.ToolTaker = (*Adapter)(nil)
)
