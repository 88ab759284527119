// Package azure adapts Azure OpenAI chat completions: deployment URLs, the
// api-version query parameter and the api-key header. The stream is
// OpenAI-shaped, with Azure's prompt-annotation first frame (empty choices)
// and content_filter finishes, which end the stream normally.
package azure

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/oaistream"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
	"github.com/airlock-dev/airlock/gateway/adapter/prompt"
	"github.com/airlock-dev/airlock/pkg/model"
)

// Provider is the provider name this package serves.
const Provider = model.AzureOpenAI

// DefaultAPIVersion is used when the model has no APIVersion: the GA
// version that supports stream_options.include_usage.
const DefaultAPIVersion = "2024-10-21"

// Adapter streams chat completions from an Azure OpenAI resource. The
// model's Endpoint is the resource URL (https://<resource>.openai.azure.com)
// and its Identifier the deployment name.
type Adapter struct {
	up *upstream.Client
}

// New returns an Adapter using cfg's HTTP client, timeouts and bounds.
func New(cfg adapter.Config) (adapter.Adapter, error) {
	return &Adapter{up: upstream.New(cfg, upstream.HeaderKey("Api-Key"))}, nil
}

// URL returns the chat completions URL for model m.
func URL(m adapter.Model) string {
	v := m.APIVersion
	if v == "" {
		v = DefaultAPIVersion
	}
	return strings.TrimRight(m.Endpoint, "/") + "/openai/deployments/" + url.PathEscape(m.Identifier) +
		"/chat/completions?api-version=" + url.QueryEscape(v)
}

// Stream implements adapter.Adapter. Code features use chat prompts: Azure
// deployments of chat models take no FIM text completions.
func (a *Adapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	if req.Model.Identifier == "" {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "azure_openai model has no deployment (identifier)"}
	}
	// The deployment selects the model; "model" in the body is ignored by
	// Azure but kept so request logs name it.
	body, err := oaistream.ChatBody(req, req.Model.Identifier, prompt.Chat(req), true)
	if err != nil {
		return adapter.Result{}, &adapter.Error{Kind: adapter.KindBadRequest, Message: "cannot encode the request", Err: err}
	}
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"text/event-stream"},
	}
	resp, err := a.up.Start(ctx, upstream.Request{URL: URL(req.Model), Header: h, Body: body, APIKey: req.Model.APIKey})
	if err != nil {
		return adapter.Result{}, err
	}
	defer resp.Close()
	co := resp.Coalesce(emit)
	return co.Finish(oaistream.NewDecoder(oaistream.Chat).Decode(resp, a.up.MaxEventBytes(), co.Emit))
}

// TakesTools implements adapter.ToolTaker: tools, tool_choice,
// parallel_tool_calls and tool turns are sent as the Chat Completions API
// defines them, and the stream's delta.tool_calls are reported.
func (a *Adapter) TakesTools() bool { return true }

var (
	_ adapter.Adapter   = (*Adapter)(nil)
	_ adapter.ToolTaker = (*Adapter)(nil)
)
