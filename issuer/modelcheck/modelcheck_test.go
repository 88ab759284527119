package modelcheck_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/issuer/modelcheck"
	"github.com/airlock-dev/airlock/issuer/store"
)

func base() store.Model {
	return store.Model{Name: "m", Family: "codestral", Provider: "ollama", Endpoint: "http://127.0.0.1:11434",
		Identifier: "codestral:22b", TrustedNetworks: []string{"127.0.0.0/8"}}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*store.Model)
		apiKey string
		field  string // "" means valid
	}{
		{name: "valid", edit: func(*store.Model) {}},
		{name: "host names are checked by the gateway, not here", edit: func(m *store.Model) { m.Endpoint = "https://models.internal"; m.TrustedNetworks = nil }},
		{name: "IPv4-mapped IPv6 is treated as IPv4", edit: func(m *store.Model) { m.Endpoint = "http://[::ffff:127.0.0.1]:80" }},
		{name: "unmasked CIDR is accepted", edit: func(m *store.Model) { m.TrustedNetworks = []string{"127.0.0.9/8"} }},
		{name: "name too long", edit: func(m *store.Model) { m.Name = strings.Repeat("a", 64) }, field: "name"},
		{name: "name starting with dash", edit: func(m *store.Model) { m.Name = "-a" }, field: "name"},
		{name: "empty endpoint", edit: func(m *store.Model) { m.Endpoint = "" }, field: "endpoint"},
		{name: "opaque URL", edit: func(m *store.Model) { m.Endpoint = "http:foo" }, field: "endpoint"},
		{name: "query string", edit: func(m *store.Model) { m.Endpoint = "http://127.0.0.1/v1?key=x" }, field: "endpoint"},
		{name: "file scheme", edit: func(m *store.Model) { m.Endpoint = "file:///etc/passwd" }, field: "endpoint"},
		{name: "loopback outside its network", edit: func(m *store.Model) { m.TrustedNetworks = []string{"10.0.0.0/8"} }, field: "endpoint"},
		{name: "garbage CIDR", edit: func(m *store.Model) { m.TrustedNetworks = []string{"ten"} }, field: "trusted_networks[0]"},
		{name: "bad fallback name", edit: func(m *store.Model) { m.Fallback = "Not Valid" }, field: "fallback_model"},
		{name: "api key with a newline", edit: func(*store.Model) {}, apiKey: "a\nb", field: "api_key"},
		{name: "api version for a provider that has none", edit: func(m *store.Model) { m.APIVersion = "2024-10-21" }, field: "api_version"},
		{name: "azure api version in the wrong form", edit: func(m *store.Model) { azure(m); m.APIVersion = "v1" }, field: "api_version"},
		{name: "azure api version", edit: func(m *store.Model) { azure(m); m.APIVersion = "2025-01-01-preview" }},
		{name: "azure api-version in the endpoint's query", edit: func(m *store.Model) { azure(m); m.Endpoint += "?api-version=2024-10-21" }, field: "endpoint"},
		{name: "azure deployment path of another deployment", edit: func(m *store.Model) { azure(m); m.Endpoint += "/openai/deployments/other" }, field: "endpoint"},
		{name: "openai_compatible without a version path", edit: func(m *store.Model) { openai(m); m.Endpoint = "http://127.0.0.1:8000" }, field: "endpoint"},
		{name: "openai_compatible chat path without a version", edit: func(m *store.Model) { openai(m); m.Endpoint = "http://127.0.0.1:8000/chat/completions" }, field: "endpoint"},
		{name: "openai_compatible with a beta version path", edit: func(m *store.Model) {
			openai(m)
			m.Endpoint = "https://models.internal/v1beta/openai"
			m.TrustedNetworks = nil
		}},
		{name: "ollama's /v1 with the native provider", edit: func(m *store.Model) { m.Endpoint = "http://127.0.0.1:11434/v1" }, field: "endpoint"},
		{name: "tgi's /v1 with the native provider", edit: func(m *store.Model) { m.Provider = "tgi"; m.Endpoint = "http://127.0.0.1:8080/v1" }, field: "endpoint"},
		{name: "huge api key", edit: func(*store.Model) {}, apiKey: strings.Repeat("k", modelcheck.MaxAPIKeyLen+1), field: "api_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(&m)
			err := modelcheck.Validate(m, tc.apiKey)
			var fe *modelcheck.FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("err = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

func openai(m *store.Model) { m.Provider, m.Endpoint = "openai_compatible", "http://127.0.0.1:8000/v1" }

func azure(m *store.Model) {
	m.Provider, m.Endpoint, m.Identifier = "azure_openai", "https://127.0.0.1", "gpt-4o-prod"
}

// Endpoints that already hold the API path the adapter appends are reduced
// to the base where that is unambiguous, and then valid; the rest are left
// for Validate to refuse.
func TestNormalize(t *testing.T) {
	tests := []struct {
		provider, endpoint, identifier string
		want                           string
		valid                          bool
	}{
		{"openai_compatible", "http://127.0.0.1:8000/v1/", "m", "http://127.0.0.1:8000/v1", true},
		{"openai_compatible", "http://127.0.0.1:8000/v1/chat/completions", "m", "http://127.0.0.1:8000/v1", true},
		{"openai_compatible", "http://127.0.0.1:8000/v1/completions", "m", "http://127.0.0.1:8000/v1", true},
		{"openai_compatible", "http://127.0.0.1:8000/chat/completions", "m", "http://127.0.0.1:8000/chat/completions", false},
		{"openai_compatible", "http://127.0.0.1:8000", "m", "http://127.0.0.1:8000", false},
		{"ollama", "http://127.0.0.1:11434/api/chat", "m", "http://127.0.0.1:11434", true},
		{"ollama", "http://127.0.0.1:11434/api/generate", "m", "http://127.0.0.1:11434", true},
		{"ollama", "http://127.0.0.1:11434/api/", "m", "http://127.0.0.1:11434", true},
		{"ollama", "http://127.0.0.1:11434/v1", "m", "http://127.0.0.1:11434/v1", false},
		{"tgi", "http://127.0.0.1:8080/generate_stream", "m", "http://127.0.0.1:8080", true},
		{"anthropic", "https://127.0.0.1/v1/messages", "m", "https://127.0.0.1/v1", true},
		{"azure_openai", "https://127.0.0.1/openai/deployments/gpt-4o-prod/chat/completions", "gpt-4o-prod", "https://127.0.0.1", true},
		{"azure_openai", "https://127.0.0.1/openai/deployments/gpt-4o-prod", "gpt-4o-prod", "https://127.0.0.1", true},
		{"azure_openai", "https://127.0.0.1/openai/deployments/other/chat/completions", "gpt-4o-prod", "https://127.0.0.1/openai/deployments/other/chat/completions", false},
		{"azure_openai", "https://127.0.0.1/", "gpt-4o-prod", "https://127.0.0.1", true},
	}
	for _, tc := range tests {
		t.Run(tc.provider+" "+tc.endpoint, func(t *testing.T) {
			m := base()
			m.Provider, m.Endpoint, m.Identifier = tc.provider, tc.endpoint, tc.identifier
			got := modelcheck.Normalize(m)
			if got.Endpoint != tc.want {
				t.Errorf("Normalize endpoint = %q, want %q", got.Endpoint, tc.want)
			}
			err := modelcheck.Validate(got, "")
			if (err == nil) != tc.valid {
				t.Fatalf("Validate(%q) = %v, want valid=%v", got.Endpoint, err, tc.valid)
			}
			// A refusal shows the expected form.
			if err != nil && !strings.Contains(err.Error(), "want ") {
				t.Errorf("error %q does not show the expected form", err)
			}
		})
	}
}

func TestErrorsNeverEchoTheAPIKeyOrURLCredentials(t *testing.T) {
	m := base()
	m.Endpoint = "http://user:hunter2@127.0.0.1/"
	if err := modelcheck.Validate(m, ""); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
	if err := modelcheck.Validate(base(), "secret\nkey"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzValidate feeds arbitrary endpoints and networks: Validate must never
// panic, must return only FieldErrors, and must never echo the API key.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8000/v1", "https://[fd00::1]/", "http://[::1", "ftp://x", "http://u:p@h/", "", "http:opaque", "//host/path", "http://%41/"} {
		f.Add(s, "127.0.0.0/8", "sk-fuzz")
	}
	f.Fuzz(func(t *testing.T, endpoint, network, key string) {
		// The key carries a marker no echo of the other fields can make up
		// (an escaped byte of the endpoint can spell digits, never this),
		// so finding it in the error means the key itself was echoed.
		const marker = "sk-LEAK-"
		apiKey := marker + key
		m := base()
		m.Endpoint, m.TrustedNetworks = endpoint, []string{network}
		err := modelcheck.Validate(m, apiKey)
		if err == nil {
			return
		}
		var fe *modelcheck.FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("non-field error %T", err)
		}
		if strings.Contains(err.Error(), marker) && !strings.Contains(endpoint+network, marker) {
			t.Fatalf("error echoes the API key: %v", err)
		}
	})
}
