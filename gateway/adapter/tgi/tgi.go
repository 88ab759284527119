// Package tgi adapts Hugging Face Text Generation Inference's native
// /generate_stream endpoint (server-sent events of tokens). TGI's
// OpenAI-compatible /v1/chat/completions is served by package openai.
package tgi

import (
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
const Provider = model.TGI

// Adapter streams raw-prompt generations from TGI. The model's Endpoint is
// the TGI base URL; requests go to {Endpoint}/generate_stream. TGI serves one
// model, so Identifier is not sent.
type Adapter struct {
	up *upstream.Client
}

// New returns an Adapter using cfg's HTTP client, timeouts and bounds.
func New(cfg adapter.Config) (adapter.Adapter, error) {
	return &Adapter{up: upstream.New(cfg, upstream.BearerKey)}, nil
}

type parameters struct {
	MaxNewTokens int      `json:"max_new_tokens,omitempty"`
	Temperature  *float32 `json:"temperature,omitempty"`
	TopP         *float32 `json:"top_p,omitempty"`
	Stop         []string `json:"stop,omitempty"`
	Details      bool     `json:"details"`
}

type request struct {
	Inputs     string     `json:"inputs"`
	Parameters parameters `json:"parameters"`
	Stream     bool       `json:"stream"`
}

// Body returns the JSON body: a FIM prompt for code completion when the
// family has a template, else the chat turns flattened to text. details is
// always requested: the final event's details carry finish and usage.
func Body(req *adapter.Request) ([]byte, error) {
	r := request{Stream: true, Parameters: parameters{MaxNewTokens: req.MaxTokens, TopP: req.TopP, Stop: req.Stop, Details: true}}
	// TGI rejects temperature 0; greedy decoding is its default anyway.
	if req.Temperature != nil && *req.Temperature > 0 {
		r.Parameters.Temperature = req.Temperature
	}
	if text, stop, ok := fim(req); ok {
		r.Inputs = text
		r.Parameters.Stop = append(append([]string(nil), req.Stop...), stop...)
	} else {
		r.Inputs = prompt.Plain(prompt.Chat(req))
	}
	return json.Marshal(r)
}

func fim(req *adapter.Request) (string, []string, bool) {
	if !prompt.UseFIM(req) {
		return "", nil, false
	}
	return prompt.FIM(req.Model.Family, req.Code.Above, req.Code.Below)
}

// Stream implements adapter.Adapter, sending the key as a bearer token when
// one is configured.
func (a *Adapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	body, err := Body(req)
	if err != nil {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "cannot encode the request", Err: err}
	}
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"text/event-stream"},
	}
	url := strings.TrimRight(req.Model.Endpoint, "/") + "/generate_stream"
	resp, err := a.up.Start(ctx, upstream.Request{URL: url, Header: h, Body: body, APIKey: req.Model.APIKey})
	if err != nil {
		return adapter.Result{}, err
	}
	defer resp.Close()
	co := resp.Coalesce(emit)
	return co.Finish(decode(resp, a.up.MaxEventBytes(), co.Emit))
}

type event struct {
	Token *struct {
		Text    string `json:"text"`
		Special bool   `json:"special"`
	} `json:"token"`
	Details *struct {
		FinishReason    string `json:"finish_reason"`
		GeneratedTokens int    `json:"generated_tokens"`
		InputLength     *int   `json:"input_length"`
	} `json:"details"`
	Error json.RawMessage `json:"error"`
}

// decode reads token events until the one with details.
func decode(resp *upstream.Response, maxEvent int, emit func(adapter.Delta) error) (adapter.Result, error) {
	dec := sse.NewDecoder(resp, maxEvent)
	for {
		data, err := upstream.NextData(dec, resp, maxEvent)
		if err != nil {
			return adapter.Result{}, err
		}
		var e event
		if err := json.Unmarshal(data, &e); err != nil {
			return adapter.Result{}, upstream.Malformed("invalid JSON event", err)
		}
		if upstream.HasError(e.Error) {
			return adapter.Result{}, resp.StreamError(data)
		}
		if e.Token != nil && !e.Token.Special && e.Token.Text != "" {
			if err := emit(adapter.Delta{Text: e.Token.Text}); err != nil {
				return adapter.Result{}, err
			}
		}
		if d := e.Details; d != nil {
			res := adapter.Result{Finish: Finish(d.FinishReason), RawFinish: d.FinishReason}
			if d.InputLength != nil {
				res.Usage = &adapter.Usage{PromptTokens: *d.InputLength, CompletionTokens: d.GeneratedTokens}
			}
			return res, nil
		}
	}
}

// Finish normalizes details.finish_reason: length → length; eos_token,
// stop_sequence and anything else → stop.
func Finish(raw string) adapter.Finish {
	if raw == "length" {
		return adapter.FinishLength
	}
	return adapter.FinishStop
}

var _ adapter.Adapter = (*Adapter)(nil)
