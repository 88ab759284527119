// Package openai is the OpenAI-compatible dialect of the gateway's HTTP API:
// POST /v1/chat/completions, POST /v1/completions (fill-in-the-middle with
// prompt and suffix) and GET /v1/models, with OpenAI's request and answer
// shapes, its SSE framing and its error envelope, so that the official SDKs
// and the tools built on them use the gateway unchanged.
//
// `model` names a feature (code_completions, code_generations, duo_chat);
// the administrator's binding decides which model server answers. Every
// request goes through the same completion core as gRPC (limits, routing,
// retries, adapters). Fields a model cannot honour (n > 1, logprobs,
// penalties, ...) are refused with a 400 naming the field, never dropped;
// unknown fields are ignored. Tools (tools, tool_choice,
// parallel_tool_calls, tool turns) pass through to models whose provider
// takes them (openai_compatible, azure_openai, anthropic); for a feature
// bound to another provider the core refuses them with a 400 naming `tools`
// and the provider.
package openai

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Name labels the dialect in metrics and logs.
const Name = "openai"

// Completer runs completions (*completion.Service). Serve aggregates;
// ServeStream relays through the core's bounded relay. Both return the
// closing message or a status error.
type Completer interface {
	Serve(ctx context.Context, in completion.Input, emit func(completion.Delta) error) (*gatewayv1.CompletionDone, error)
	ServeStream(ctx context.Context, in completion.Input, send func(completion.Delta) error) (*gatewayv1.CompletionDone, error)
}

// Config configures the dialect.
type Config struct {
	Completer Completer
	// Now is the clock of `created`; nil means time.Now.
	Now func() time.Time
	// WriteTimeout bounds writing a whole (non-streamed) answer to a client
	// that does not read it (default 30 s; the gateway passes
	// --client-send-timeout, which bounds streams in the core's relay).
	WriteTimeout time.Duration
}

type handlers struct {
	c            Completer
	now          func() time.Time
	writeTimeout time.Duration
}

// New returns the dialect's routes for httpapi. It fails without a Completer.
func New(cfg Config) (httpapi.Dialect, error) {
	if cfg.Completer == nil {
		return httpapi.Dialect{}, errors.New("openai: Config.Completer is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	h := &handlers{c: cfg.Completer, now: cfg.Now, writeTimeout: cfg.WriteTimeout}
	return httpapi.Dialect{
		Name: Name,
		Routes: []httpapi.Route{
			{Pattern: "POST /v1/chat/completions", Name: "chat_completions", Handler: h.chat},
			{Pattern: "POST /v1/completions", Name: "completions", Handler: h.completions},
			{Pattern: "GET /v1/models", Name: "models", Handler: h.models},
			{Pattern: "GET /v1/models/{model}", Name: "model", Handler: h.model},
			{Pattern: "/v1/", Name: "unknown", Public: true, Handler: unknownRoute},
		},
		WriteError: writeError,
	}, nil
}

func (h *handlers) chat(w http.ResponseWriter, r *http.Request) {
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req, herr := parseChat(body)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	h.run(w, r, req, chatShape{})
}

func (h *handlers) completions(w http.ResponseWriter, r *http.Request) {
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req, herr := parseCompletion(body)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	h.run(w, r, req, textShape{})
}

// modelObject is one entry of GET /v1/models.
type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func featureModel(f feature.Feature) modelObject {
	return modelObject{ID: string(f), Object: "model", OwnedBy: "airlock"}
}

// models lists the features this token may use.
func (h *handlers) models(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.IdentityFrom(r.Context())
	list := struct {
		Object string        `json:"object"`
		Data   []modelObject `json:"data"`
	}{Object: "list", Data: []modelObject{}}
	for _, f := range feature.All {
		if id != nil && f.Allowed(id.Scopes) {
			list.Data = append(list.Data, featureModel(f))
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *handlers) model(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("model")
	f, err := feature.Parse(name)
	id, _ := auth.IdentityFrom(r.Context())
	if err != nil || id == nil || !f.Allowed(id.Scopes) {
		writeError(w, r, unknownModel(name))
		return
	}
	writeJSON(w, http.StatusOK, featureModel(f))
}

func unknownRoute(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if len(path) > 100 {
		path = path[:100] + "…"
	}
	writeError(w, r, &httpapi.Error{Status: http.StatusNotFound, Code: "unknown_url",
		Message: "Unknown request URL: " + r.Method + " " + strings.ToValidUTF8(path, "?") +
			". This gateway serves POST /v1/chat/completions, POST /v1/completions and GET /v1/models."})
}
