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
		{name: "host names are checked by the gateway, not here", edit: func(m *store.Model) { m.Endpoint = "https://models.internal/v1"; m.TrustedNetworks = nil }},
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
	f.Fuzz(func(t *testing.T, endpoint, network, apiKey string) {
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
		if len(apiKey) >= 8 && strings.Contains(err.Error(), apiKey) {
			t.Fatalf("error echoes the API key: %v", err)
		}
	})
}
