// Package gitlab is the GitLab AI gateway dialect of the gateway's HTTP
// API: the paths, bodies, answers, stream framings and error bodies a
// self-managed GitLab instance (17.6 to 18.x) and the GitLab Language
// Server send to and expect from a self-hosted AI gateway, so Airlock can
// stand in for one, as GitLab's and the AI gateway's public sources define them.
//
//	POST /v2/code/completions, /v2/completions   code completions (flat body)
//	POST /v2/code/generations                    code generations (flat body + prompt)
//	POST /v3/code/completions                    prompt_components + model_metadata
//	POST /v4/code/suggestions                    the same, streamed as SSE events
//	POST /v2/chat/agent                          Duo Chat, answered as NDJSON
//	POST /v1/prompts/model_configuration%2Fcheck the admin's "Test connection"
//	HEAD /, GET /monitoring/healthz, /monitoring/ready   (no authentication)
//
// Authentication is the gRPC API's, header for header (the dialect sets
// httpapi.Dialect.RequireGitLabHeaders). Every request runs through the
// same completion core as gRPC. The administrator's catalog decides which
// model answers each feature; model fields in the request (GitLab sends
// its self-hosted model's endpoint and key) are ignored unless the gateway
// was started with request-supplied models allowed, and then only
// endpoints inside its own network allowlist are dialled (RequestModels).
// Airlock runs no tools: Duo Chat is answered directly, never with an
// action step.
package gitlab

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// Name labels the dialect in metrics and logs.
const Name = "gitlab"

// Completer runs completions (*completion.Service). Serve aggregates;
// ServeStream relays through the core's bounded relay. Both return the
// closing message or a status error.
type Completer interface {
	Serve(ctx context.Context, in completion.Input, emit func(completion.Delta) error) (*gatewayv1.CompletionDone, error)
	ServeStream(ctx context.Context, in completion.Input, send func(completion.Delta) error) (*gatewayv1.CompletionDone, error)
}

// textOnly adapts a sink of text to the core's deltas. This dialect offers
// no tools: its requests carry none, and the core ends an answer with a
// tool call to a request without tools (Internal), so only text arrives.
func textOnly(f func(string) error) func(completion.Delta) error {
	return func(d completion.Delta) error {
		if d.Text == "" {
			return nil
		}
		return f(d.Text)
	}
}

// Config configures the dialect.
type Config struct {
	Completer Completer
	// Ready returns nil when the gateway can serve (it holds verification
	// keys and, when it needs one, the model configuration), else why not;
	// GET /monitoring/ready answers 503 with that reason. Nil means ready.
	Ready func() error
	// RequestModels is the policy for model fields in requests.
	RequestModels RequestModels
	// Now is the clock of `created` and `timestamp`; nil means time.Now.
	Now func() time.Time
	// WriteTimeout bounds writing a whole (non-streamed) answer to a client
	// that does not read it (default 30 s).
	WriteTimeout time.Duration
	Logger       zerolog.Logger
}

type handlers struct {
	c            Completer
	ready        func() error
	models       RequestModels
	now          func() time.Time
	writeTimeout time.Duration
	log          zerolog.Logger
	ignoredOnce  sync.Once
}

// New returns the dialect's routes for httpapi. It fails without a
// Completer, or when RequestModels is inconsistent (see its Validate).
func New(cfg Config) (httpapi.Dialect, error) {
	if cfg.Completer == nil {
		return httpapi.Dialect{}, errors.New("gitlab: Config.Completer is required")
	}
	if err := cfg.RequestModels.Validate(); err != nil {
		return httpapi.Dialect{}, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	h := &handlers{c: cfg.Completer, ready: cfg.Ready, models: cfg.RequestModels, now: cfg.Now,
		writeTimeout: cfg.WriteTimeout, log: cfg.Logger}
	return httpapi.Dialect{
		Name:                 Name,
		RequireGitLabHeaders: true,
		Routes: []httpapi.Route{
			{Pattern: "POST /v2/code/completions", Name: "v2_code_completions", Handler: h.v2Completions},
			{Pattern: "POST /v2/completions", Name: "v2_completions", Handler: h.v2Completions},
			{Pattern: "POST /v2/code/generations", Name: "v2_code_generations", Handler: h.v2Generations},
			{Pattern: "POST /v3/code/completions", Name: "v3_code_completions", Handler: h.v3Completions},
			{Pattern: "POST /v4/code/suggestions", Name: "v4_code_suggestions", Handler: h.v4Suggestions},
			{Pattern: "POST /v2/chat/agent", Name: "v2_chat_agent", Handler: h.chatAgent},
			{Pattern: "POST /v1/prompts/model_configuration%2Fcheck", Name: "model_configuration_check", Handler: h.modelCheck},
			// The real gateway's prompt id is a path parameter: the slash
			// may also arrive unescaped.
			{Pattern: "POST /v1/prompts/model_configuration/check", Name: "model_configuration_check", Handler: h.modelCheck},
			{Pattern: "HEAD /{$}", Name: "head", Public: true, Handler: head},
			{Pattern: "GET /monitoring/healthz", Name: "healthz", Public: true, Handler: healthz},
			{Pattern: "GET /monitoring/ready", Name: "ready", Public: true, Handler: h.readyz},
		},
		WriteError: writeError,
	}, nil
}

// head answers GitLab's host probe (HEAD on the gateway's base URL), which
// needs only an HTTP answer.
func head(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

// healthz is the real gateway's liveness answer: 200 with no checks.
func healthz(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, struct{}{}) }

func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.ready(); err != nil {
		writeError(w, r, &httpapi.Error{Status: http.StatusServiceUnavailable, Message: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
