// Package ollama adapts Ollama's native API: /api/chat for chat and
// /api/generate with a suffix for fill-in-the-middle code completion, both
// streamed as newline-delimited JSON.
package ollama

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
const Provider = model.Ollama

// Adapter streams completions from Ollama. The model's Endpoint is the
// Ollama base URL (e.g. http://host:11434).
type Adapter struct {
	up *upstream.Client
}

// New returns an Adapter using cfg's HTTP client, timeouts and bounds.
func New(cfg adapter.Config) (adapter.Adapter, error) {
	return &Adapter{up: upstream.New(cfg, upstream.BearerKey)}, nil
}

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type options struct {
	NumPredict  int      `json:"num_predict,omitempty"`
	Temperature *float32 `json:"temperature,omitempty"`
	TopP        *float32 `json:"top_p,omitempty"`
	Stop        []string `json:"stop,omitempty"`
}

type request struct {
	Model    string    `json:"model"`
	Messages []message `json:"messages,omitempty"`
	Prompt   *string   `json:"prompt,omitempty"`
	Suffix   *string   `json:"suffix,omitempty"`
	Stream   bool      `json:"stream"`
	Options  *options  `json:"options,omitempty"`
}

// Build returns the path (/api/chat or /api/generate) and JSON body for req.
// A code completion whose family has a FIM template goes to /api/generate
// with the code below the cursor as suffix: Ollama applies the model's own
// infill template.
func Build(req *adapter.Request) (path string, body []byte, err error) {
	r := request{Model: req.Model.Identifier, Stream: true}
	o := options{NumPredict: req.MaxTokens, Temperature: req.Temperature, TopP: req.TopP, Stop: req.Stop}
	if o.NumPredict != 0 || o.Temperature != nil || o.TopP != nil || len(o.Stop) > 0 {
		r.Options = &o
	}
	if prompt.UseFIM(req) {
		above, below := req.Code.Above, req.Code.Below
		r.Prompt, r.Suffix = &above, &below
		path = "/api/generate"
	} else {
		for _, m := range prompt.Chat(req) {
			r.Messages = append(r.Messages, message{Role: m.Role, Content: m.Content})
		}
		path = "/api/chat"
	}
	body, err = json.Marshal(r)
	return path, body, err
}

// Stream implements adapter.Adapter. Ollama has no API keys of its own; a
// configured key is sent as a bearer token for the proxies that guard it.
func (a *Adapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	path, body, err := Build(req)
	if err != nil {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "cannot encode the request", Err: err}
	}
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/x-ndjson"},
	}
	url := strings.TrimRight(req.Model.Endpoint, "/") + path
	resp, err := a.up.Start(ctx, upstream.Request{URL: url, Header: h, Body: body, APIKey: req.Model.APIKey})
	if err != nil {
		return adapter.Result{}, err
	}
	defer resp.Close()
	co := resp.Coalesce(emit)
	return co.Finish(decode(resp, a.up.MaxEventBytes(), co.Emit))
}

type line struct {
	Message struct {
		Content string `json:"content"`
	} `json:"message"`
	Response        string          `json:"response"` // /api/generate
	Done            bool            `json:"done"`
	DoneReason      string          `json:"done_reason"`
	PromptEvalCount *int            `json:"prompt_eval_count"`
	EvalCount       *int            `json:"eval_count"`
	Error           json.RawMessage `json:"error"`
}

// decode reads NDJSON lines until the done:true line.
func decode(resp *upstream.Response, maxEvent int, emit func(adapter.Delta) error) (adapter.Result, error) {
	lr := sse.NewLineReader(resp, maxEvent)
	var l line
	for {
		raw, err := lr.Next()
		if err != nil {
			return adapter.Result{}, upstream.DecodeError(resp, err, maxEvent)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			continue
		}
		l = line{}
		if err := json.Unmarshal(raw, &l); err != nil {
			return adapter.Result{}, upstream.Malformed("invalid JSON line", err)
		}
		if upstream.HasError(l.Error) {
			return adapter.Result{}, resp.StreamError(raw)
		}
		text := l.Message.Content
		if text == "" {
			text = l.Response
		}
		if text != "" {
			if err := emit(adapter.Delta{Text: text}); err != nil {
				return adapter.Result{}, err
			}
		}
		if l.Done {
			res := adapter.Result{Finish: Finish(l.DoneReason), RawFinish: l.DoneReason}
			if l.PromptEvalCount != nil || l.EvalCount != nil {
				res.Usage = &adapter.Usage{}
				if l.PromptEvalCount != nil {
					res.Usage.PromptTokens = *l.PromptEvalCount
				}
				if l.EvalCount != nil {
					res.Usage.CompletionTokens = *l.EvalCount
				}
			}
			return res, nil
		}
	}
}

// Finish normalizes done_reason: length → length; stop, missing (older
// servers) and anything else → stop.
func Finish(raw string) adapter.Finish {
	if raw == "length" {
		return adapter.FinishLength
	}
	return adapter.FinishStop
}

var _ adapter.Adapter = (*Adapter)(nil)
