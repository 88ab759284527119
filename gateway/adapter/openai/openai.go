// Package openai adapts OpenAI-compatible servers (vLLM, llama.cpp server,
// Ollama /v1, LM Studio, Mistral, Hugging Face TGI /v1, OpenAI): streaming
// chat completions, and text completions with a fill-in-the-middle prompt
// for code completion when the model family has a FIM template.
package openai

import (
	"context"
	"net/http"
	"strings"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/oaistream"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
	"github.com/airlock-dev/airlock/gateway/adapter/prompt"
	"github.com/airlock-dev/airlock/pkg/model"
)

// Provider is the provider name this package serves.
const Provider = model.OpenAICompatible

// Adapter streams completions from an OpenAI-compatible server. The model's
// Endpoint is the API base URL including its version path (vLLM: ends in
// /v1); requests go to {Endpoint}/chat/completions or {Endpoint}/completions.
type Adapter struct {
	up *upstream.Client
}

// New returns an Adapter using cfg's HTTP client, timeouts and bounds.
func New(cfg adapter.Config) (adapter.Adapter, error) {
	return &Adapter{up: upstream.New(cfg, upstream.BearerKey)}, nil
}

// Stream implements adapter.Adapter. It asks for the final usage chunk
// (stream_options.include_usage) and sends `Authorization: Bearer <key>` only
// when a key is configured.
func (a *Adapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	base := strings.TrimRight(req.Model.Endpoint, "/")
	var (
		url  string
		body []byte
		err  error
		mode = oaistream.Chat
	)
	if fim, stop, ok := fimPrompt(req); ok {
		mode, url = oaistream.Text, base+"/completions"
		body, err = oaistream.TextBody(req, req.Model.Identifier, fim, stop, true)
	} else {
		url = base + "/chat/completions"
		body, err = oaistream.ChatBody(req, req.Model.Identifier, prompt.Chat(req), true)
	}
	if err != nil {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "cannot encode the request", Err: err}
	}
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"text/event-stream"},
	}
	resp, err := a.up.Start(ctx, upstream.Request{URL: url, Header: h, Body: body, APIKey: req.Model.APIKey})
	if err != nil {
		return adapter.Result{}, err
	}
	defer resp.Close()
	co := resp.Coalesce(emit)
	return co.Finish(oaistream.NewDecoder(mode).Decode(resp, a.up.MaxEventBytes(), co.Emit))
}

// fimPrompt returns the FIM prompt and stop sequences for a code completion
// whose model family has a template.
func fimPrompt(req *adapter.Request) (string, []string, bool) {
	// A request with tools is a chat: FIM text completions take none.
	if !prompt.UseFIM(req) || req.HasToolFields() {
		return "", nil, false
	}
	text, stop, ok := prompt.FIM(req.Model.Family, req.Code.Above, req.Code.Below)
	if !ok {
		return "", nil, false
	}
	all := make([]string, 0, len(req.Stop)+len(stop))
	all = append(all, req.Stop...)
	all = append(all, stop...)
	return text, all, true
}

// TakesTools implements adapter.ToolTaker: tools, tool_choice,
// parallel_tool_calls and tool turns are sent as the Chat Completions API
// defines them, and the stream's delta.tool_calls are reported.
func (a *Adapter) TakesTools() bool { return true }

var (
	_ adapter.Adapter   = (*Adapter)(nil)
	_ adapter.ToolTaker = (*Adapter)(nil)
)
