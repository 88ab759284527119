package gitlab

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	"github.com/airlock-dev/airlock/pkg/model"
)

// RequestModels is the policy for the model a GitLab instance names in a
// request (flat model_provider / model_endpoint / model_name /
// model_api_key / model_identifier, or model_metadata{provider, name,
// endpoint, api_key, identifier}): its administrator's self-hosted model.
// A request-supplied endpoint makes the gateway dial wherever a caller
// says, so it is honoured only when Allow is set, and then only into
// Networks (the egress guard checks every resolved address at dial time,
// so a name that resolves elsewhere is refused too). Otherwise the
// catalog's model for the feature answers and the fields are ignored
// (logged once, never the key).
type RequestModels struct {
	// Allow honours request-supplied models (--allow-request-models).
	Allow bool
	// Networks are the CIDRs a request-supplied endpoint may resolve into
	// (--request-model-networks). Required with Allow.
	Networks []string
}

// Validate reports an Allow without Networks, or a network that is not a
// CIDR.
func (p RequestModels) Validate() error {
	if !p.Allow {
		return nil
	}
	if len(p.Networks) == 0 {
		return errors.New("gitlab: request-supplied models need an allowlist of networks (--request-model-networks)")
	}
	for _, n := range p.Networks {
		if _, err := netip.ParsePrefix(n); err != nil {
			return fmt.Errorf("gitlab: request model network %q is not a CIDR", n)
		}
	}
	return nil
}

// modelSpec is a model named in a request, in either encoding.
type modelSpec struct {
	provider, name, endpoint, apiKey, identifier string
	field                                        string // "model_" or "model_metadata.", for messages
}

// flatModel holds the flat model_* fields (/v2 code routes).
type flatModel struct {
	ModelProvider   string         `json:"model_provider"`
	ModelEndpoint   string         `json:"model_endpoint"`
	ModelName       string         `json:"model_name"`
	ModelAPIKey     string         `json:"model_api_key"`
	ModelIdentifier string         `json:"model_identifier"`
	ModelMetadata   *modelMetadata `json:"model_metadata"`
}

// modelMetadata is the object form (/v3, /v4, chat, the check).
type modelMetadata struct {
	Provider   string `json:"provider"`
	Name       string `json:"name"`
	Endpoint   string `json:"endpoint"`
	APIKey     string `json:"api_key"`
	Identifier string `json:"identifier"`
}

func (m *modelMetadata) spec() modelSpec {
	if m == nil {
		return modelSpec{}
	}
	return modelSpec{provider: m.Provider, name: m.Name, endpoint: m.Endpoint, apiKey: m.APIKey, identifier: m.Identifier, field: "model_metadata."}
}

// spec is model_metadata when sent, else the flat fields.
func (f *flatModel) spec() modelSpec {
	if f.ModelMetadata != nil {
		return f.ModelMetadata.spec()
	}
	return modelSpec{provider: f.ModelProvider, name: f.ModelName, endpoint: f.ModelEndpoint, apiKey: f.ModelAPIKey, identifier: f.ModelIdentifier, field: "model_"}
}

// Bounds of request-supplied model fields.
const (
	maxModelName       = 50 // the real gateway's bound on model_name
	maxModelIdentifier = 255
	maxModelEndpoint   = 2048
	maxModelAPIKey     = 4096
)

// requestProviders maps the provider prefix of an identifier
// ("custom_openai/<id>", LiteLLM's convention) to the adapter that speaks
// that API at the endpoint.
var requestProviders = map[string]string{
	"custom_openai": model.OpenAICompatible, "openai": model.OpenAICompatible,
	"text-completion-openai": model.OpenAICompatible, "hosted_vllm": model.OpenAICompatible,
	"ollama": model.Ollama, "ollama_chat": model.Ollama, "anthropic": model.Anthropic,
}

// target returns the request-supplied model to use, or nil when the
// catalog's model answers: no endpoint was named, or request-supplied
// models are not allowed (then ignored is true, for the caller to log). It
// refuses, with 422 naming the field, an endpoint that is not an http(s)
// URL, an IP endpoint outside Networks, a provider no adapter speaks and
// over-long fields.
func (p RequestModels) target(s modelSpec) (t *catalog.Target, ignored bool, e *httpapi.Error) {
	if s.endpoint == "" {
		return nil, s.identifier != "" || s.apiKey != "" || s.name != "", nil
	}
	if !p.Allow {
		return nil, true, nil
	}
	switch {
	case len(s.name) > maxModelName:
		return nil, false, unprocessable("%sname: at most %d characters", s.field, maxModelName)
	case len(s.identifier) > maxModelIdentifier:
		return nil, false, unprocessable("%sidentifier: at most %d characters", s.field, maxModelIdentifier)
	case len(s.endpoint) > maxModelEndpoint:
		return nil, false, unprocessable("%sendpoint: at most %d characters", s.field, maxModelEndpoint)
	case len(s.apiKey) > maxModelAPIKey:
		return nil, false, unprocessable("%sapi_key: at most %d characters", s.field, maxModelAPIKey)
	}
	u, err := url.Parse(s.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, false, unprocessable("%sendpoint: want an http(s) URL without credentials, query or fragment", s.field)
	}
	if ip, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && !p.contains(ip.Unmap()) {
		return nil, false, unprocessable("%sendpoint: %s is outside the networks this gateway may dial for request-supplied models", s.field, ip)
	}
	prov, id, ok := strings.Cut(s.identifier, "/")
	if !ok {
		prov, id = "custom_openai", s.identifier
	}
	provider, known := requestProviders[prov]
	if !known {
		return nil, false, unprocessable("%sidentifier: provider %q is not supported for request-supplied models (want custom_openai/<model>, openai/<model>, ollama/<model> or anthropic/<model>)", s.field, trimEcho(prov))
	}
	if id == "" {
		id = s.name
	}
	if id == "" {
		return nil, false, unprocessable("%sidentifier: required with an endpoint (the model's name at the model server)", s.field)
	}
	return &catalog.Target{
		Model: adapter.Model{Name: id, Family: strings.ToLower(s.name), Provider: provider,
			Endpoint: strings.TrimRight(s.endpoint, "/"), Identifier: id, APIKey: s.apiKey},
		Trusted: p.Networks,
	}, false, nil
}

func (p RequestModels) contains(ip netip.Addr) bool {
	for _, n := range p.Networks {
		if pr, err := netip.ParsePrefix(n); err == nil && pr.Contains(ip) {
			return true
		}
	}
	return false
}

func trimEcho(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
