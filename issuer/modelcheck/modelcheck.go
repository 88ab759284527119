// Package modelcheck validates a self-hosted model's configuration before it
// is stored, with messages that name the field and say what is wanted. The
// family and provider names are pkg/model's.
package modelcheck

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/model"
)

// MaxAPIKeyLen bounds an API key; real keys are far shorter.
const MaxAPIKeyLen = 4096

// FieldError is a validation failure of one field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ValidName reports whether name is a valid model name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return &FieldError{"name", fmt.Sprintf("%q is not 1-63 characters of [a-z0-9_.-] starting with a letter or digit", name)}
	}
	return nil
}

// Validate checks m (its API key, if any, is apiKey) and returns the first
// *FieldError, or nil. The endpoint must have the form m's provider expects
// (call Normalize first to accept the unambiguous variants), and
// api_version is accepted only for azure_openai. It does not check that the
// fallback exists: the store does that atomically with the write.
func Validate(m store.Model, apiKey string) error {
	if err := ValidName(m.Name); err != nil {
		return err
	}
	if !model.IsFamily(m.Family) {
		return &FieldError{"family", fmt.Sprintf("unknown model family %q: want one of %s", m.Family, model.FamilyList())}
	}
	if !model.IsProvider(m.Provider) {
		return &FieldError{"provider", fmt.Sprintf("unknown provider %q: want one of %s", m.Provider, model.ProviderList())}
	}
	nets := make([]netip.Prefix, 0, len(m.TrustedNetworks))
	for i, n := range m.TrustedNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(n))
		if err != nil {
			return &FieldError{fmt.Sprintf("trusted_networks[%d]", i), fmt.Sprintf("invalid CIDR %q", n)}
		}
		nets = append(nets, p.Masked())
	}
	if err := checkEndpoint(m, nets); err != nil {
		return err
	}
	if err := checkAPIVersion(m); err != nil {
		return err
	}
	if strings.TrimSpace(m.Identifier) == "" {
		return &FieldError{"identifier", "required: the model name at the server"}
	}
	if len(m.Identifier) > 256 {
		return &FieldError{"identifier", "longer than 256 characters"}
	}
	if m.Fallback != "" {
		if m.Fallback == m.Name {
			return &FieldError{"fallback_model", "a model cannot be its own fallback"}
		}
		if err := ValidName(m.Fallback); err != nil {
			return &FieldError{"fallback_model", fmt.Sprintf("unknown model %q", m.Fallback)}
		}
	}
	if len(apiKey) > MaxAPIKeyLen {
		return &FieldError{"api_key", fmt.Sprintf("longer than %d bytes", MaxAPIKeyLen)}
	}
	if strings.ContainsAny(apiKey, "\r\n") {
		return &FieldError{"api_key", "contains a line break"}
	}
	return nil
}

func checkEndpoint(m store.Model, nets []netip.Prefix) error {
	raw := m.Endpoint
	if raw == "" {
		return &FieldError{"endpoint", "required: the model server's base URL"}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return &FieldError{"endpoint", fmt.Sprintf("malformed URL %q: want http(s)://host[:port][/path]", raw)}
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return &FieldError{"endpoint", fmt.Sprintf("scheme %q is not allowed: want http or https", u.Scheme)}
	}
	if u.User != nil {
		// Never echo the URL here: it holds a credential.
		return &FieldError{"endpoint", "must not contain credentials: set api_key instead"}
	}
	if u.Fragment != "" || u.RawQuery != "" {
		if m.Provider == "azure_openai" && u.Query().Has("api-version") {
			return &FieldError{"endpoint", "must not have a query: give the api-version as api_version (airlockctl --api-version) and the resource URL as endpoint"}
		}
		return &FieldError{"endpoint", "must not have a query or fragment"}
	}
	if err := checkProviderEndpoint(m, u); err != nil {
		return err
	}
	host := u.Hostname()
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		for _, p := range nets {
			if p.Contains(addr) {
				return nil
			}
		}
		return &FieldError{"endpoint", fmt.Sprintf("address %s is outside the trusted networks", addr)}
	}
	return nil
}
