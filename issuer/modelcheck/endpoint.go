package modelcheck

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/issuer/store"
)

// endpointRule is what one provider wants in a model's endpoint. The gateway's
// adapter appends its own API path to the endpoint, so an endpoint that
// already holds that path would be doubled (…/v1/chat/completions/chat/completions).
type endpointRule struct {
	// example is the expected form, shown in every error.
	example string
	// appends names what the gateway adds, for the error message.
	appends string
	// strip lists API path suffixes that may be removed unambiguously:
	// the endpoint minus the suffix is what the administrator meant.
	strip []string
	// refuse maps a path suffix to why it is wrong for this provider.
	refuse map[string]string
	// needVersion requires an API version segment (/v1, /v1beta, ...)
	// somewhere in the path.
	needVersion bool
}

var endpointRules = map[string]endpointRule{
	"openai_compatible": {
		example:     "http://host:8000/v1 (vLLM, llama.cpp, LM Studio, TGI /v1, Ollama /v1)",
		appends:     "/chat/completions or /completions",
		strip:       []string{"/chat/completions", "/completions"},
		needVersion: true,
	},
	"ollama": {
		example: "http://host:11434 (the native API; for Ollama's /v1 use provider openai_compatible)",
		appends: "/api/chat or /api/generate",
		strip:   []string{"/api/chat", "/api/generate", "/api"},
		refuse:  map[string]string{"/v1": "is Ollama's OpenAI-compatible API: use provider openai_compatible with it, or drop /v1 for the native API"},
	},
	"anthropic": {
		example: "https://host or https://host/v1",
		appends: "/v1/messages",
		strip:   []string{"/messages"},
	},
	"azure_openai": {
		example: "https://<resource>.openai.azure.com (the deployment is --identifier, the version --api-version)",
		appends: "/openai/deployments/<identifier>/chat/completions?api-version=<api_version>",
	},
	"tgi": {
		example: "http://host:8080 (TGI's native API; for its /v1 use provider openai_compatible)",
		appends: "/generate_stream",
		strip:   []string{"/generate_stream", "/generate"},
		refuse:  map[string]string{"/v1": "is TGI's OpenAI-compatible API: use provider openai_compatible with it, or drop /v1 for the native API"},
	},
}

// versionSegment matches an API version path segment: v1, v2, v1beta, v1alpha2.
var versionSegment = regexp.MustCompile(`^v[0-9]+[a-z0-9]*$`)

// azurePath matches the path Azure's own documentation shows for a call:
// /openai/deployments/<deployment>[/chat/completions|/completions].
var azurePath = regexp.MustCompile(`^/openai(?:/deployments/([^/]+)(?:/chat/completions|/completions)?)?$`)

// azureVersion is the form of an Azure OpenAI api-version: 2024-10-21,
// 2025-01-01-preview.
var azureVersion = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$`)

// Normalize returns m with its endpoint reduced to the base URL its
// provider's adapter expects, where that is unambiguous: a trailing slash,
// or an API path the adapter appends itself (…/v1/chat/completions → …/v1,
// Ollama …/api/chat → base, TGI …/generate_stream → base, Azure
// …/openai/deployments/<identifier>/chat/completions → the resource URL).
// Anything else is left for Validate to accept or refuse. Unknown providers
// and unparsable endpoints are returned unchanged.
func Normalize(m store.Model) store.Model {
	u, err := url.Parse(m.Endpoint)
	if err != nil || u.Host == "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return m
	}
	path := strings.TrimRight(u.Path, "/")
	switch m.Provider {
	case "azure_openai":
		sub := azurePath.FindStringSubmatch(path)
		if sub == nil {
			break
		}
		if dep, _ := url.PathUnescape(sub[1]); dep != "" && dep != m.Identifier {
			break // a deployment other than --identifier: ambiguous, Validate refuses
		}
		path = ""
	default:
		rule, ok := endpointRules[m.Provider]
		if !ok {
			return m
		}
		for _, s := range rule.strip {
			if rest, ok := strings.CutSuffix(path, s); ok {
				if m.Provider == "openai_compatible" && !hasVersion(rest) {
					continue // without a version segment the base is a guess
				}
				path = strings.TrimRight(rest, "/")
				break
			}
		}
	}
	u.Path, u.RawPath = path, ""
	m.Endpoint = u.String()
	return m
}

// checkProviderEndpoint refuses an endpoint whose path does not fit the
// provider, with the form it wants. u is the parsed endpoint.
func checkProviderEndpoint(m store.Model, u *url.URL) error {
	rule, ok := endpointRules[m.Provider]
	if !ok {
		return nil
	}
	path := strings.TrimRight(u.Path, "/")
	want := func(why string) error {
		return &FieldError{"endpoint", fmt.Sprintf("%s %s: want %s; the gateway appends %s", m.Provider, why, rule.example, rule.appends)}
	}
	for suffix, why := range rule.refuse {
		if strings.HasSuffix(path, suffix) {
			return want(fmt.Sprintf("endpoint %q %s", u.Redacted(), why))
		}
	}
	for _, s := range rule.strip {
		if strings.HasSuffix(path, s) {
			return want(fmt.Sprintf("endpoint %q already ends in the API path %s", u.Redacted(), s))
		}
	}
	switch m.Provider {
	case "openai_compatible":
		if !hasVersion(path) {
			return want(fmt.Sprintf("endpoint %q has no API version path such as /v1 (requests would go to %s/chat/completions)", u.Redacted(), strings.TrimRight(u.Redacted(), "/")))
		}
	case "azure_openai":
		if slices.Contains(strings.Split(path, "/"), "openai") {
			return want(fmt.Sprintf("endpoint %q holds a deployment path that does not match identifier %q", u.Redacted(), m.Identifier))
		}
	}
	return nil
}

func hasVersion(path string) bool {
	for _, seg := range strings.Split(path, "/") {
		if versionSegment.MatchString(seg) {
			return true
		}
	}
	return false
}

// checkAPIVersion accepts api_version only where it means something.
func checkAPIVersion(m store.Model) error {
	switch {
	case m.Provider == "azure_openai" && m.APIVersion != "" && !azureVersion.MatchString(m.APIVersion):
		return &FieldError{"api_version", fmt.Sprintf("%q is not an Azure OpenAI api-version: want YYYY-MM-DD or YYYY-MM-DD-preview, e.g. 2024-10-21", m.APIVersion)}
	case m.Provider != "azure_openai" && m.APIVersion != "":
		return &FieldError{"api_version", fmt.Sprintf("only azure_openai takes an api version; provider %s does not use it: leave it empty", m.Provider)}
	}
	return nil
}
