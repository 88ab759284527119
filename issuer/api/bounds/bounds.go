// Package bounds is the issuer's one place that bounds request sizes field
// by field, before any handler runs: repeated fields by count, strings by
// length. A request over a bound is refused with InvalidArgument naming the
// field, and never costs more than its decoding. Handlers still validate
// content (formats, known values); the bounds only guarantee that no field
// can make that work, a store key or an error message large.
package bounds

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// The bounds, documented in the protos' comments.
const (
	MaxFeatures        = 16   // features and entitled_features entries
	MaxFeatureLen      = 64   // one feature name
	MaxJTILen          = 64   // a token id (a UUID is 36)
	MaxNameLen         = 63   // model names and usernames
	MaxIDLen           = 64   // a personal access token id
	MaxShortLen        = 64   // family, provider, api_version
	MaxEndpointLen     = 2048 // a model endpoint URL
	MaxIdentifierLen   = 256  // a model identifier at its server
	MaxAPIKeyLen       = 4096 // a model API key
	MaxTrustedNetworks = 32   // trusted_networks entries
	MaxCIDRLen         = 64   // one trusted network
)

// Check returns nil or an InvalidArgument status naming the first field of
// req over its bound. Requests of other types pass.
func Check(req any) error {
	var c checker
	switch r := req.(type) {
	case *issuerv1.MintTokenRequest:
		c.strings("features", r.GetFeatures(), MaxFeatures, MaxFeatureLen)
	case *issuerv1.RevokeTokenRequest:
		c.str("jti", r.GetJti(), MaxJTILen)
	case *issuerv1.CreateModelRequest:
		c.model(r.GetModel())
	case *issuerv1.UpdateModelRequest:
		c.model(r.GetModel())
	case *issuerv1.DeleteModelRequest:
		c.str("name", r.GetName(), MaxNameLen)
	case *issuerv1.GetModelRequest:
		c.str("name", r.GetName(), MaxNameLen)
	case *issuerv1.SetFeatureSettingRequest:
		c.str("setting.feature", r.GetSetting().GetFeature(), MaxFeatureLen)
		c.str("setting.model", r.GetSetting().GetModel(), MaxNameLen)
	case *issuerv1.CreateUserRequest:
		c.str("user.username", r.GetUser().GetUsername(), MaxNameLen)
		c.strings("user.entitled_features", r.GetUser().GetEntitledFeatures(), MaxFeatures, MaxFeatureLen)
	case *issuerv1.CreatePersonalAccessTokenRequest:
		c.str("username", r.GetUsername(), MaxNameLen)
	case *issuerv1.RevokePersonalAccessTokenRequest:
		c.str("id", r.GetId(), MaxIDLen)
	}
	return c.err
}

// Unary is a unary interceptor that applies Check to every request.
func Unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := Check(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

type checker struct{ err error }

func (c *checker) str(field, v string, max int) {
	if c.err == nil && len(v) > max {
		c.err = status.Error(codes.InvalidArgument, fmt.Sprintf("%s: %d bytes, limit %d", field, len(v), max))
	}
}

func (c *checker) strings(field string, vs []string, maxN, maxLen int) {
	if c.err != nil {
		return
	}
	if len(vs) > maxN {
		c.err = status.Error(codes.InvalidArgument, fmt.Sprintf("%s: %d entries, limit %d", field, len(vs), maxN))
		return
	}
	for i, v := range vs {
		c.str(fmt.Sprintf("%s[%d]", field, i), v, maxLen)
	}
}

func (c *checker) model(m *issuerv1.Model) {
	c.str("model.name", m.GetName(), MaxNameLen)
	c.str("model.family", m.GetFamily(), MaxShortLen)
	c.str("model.provider", m.GetProvider(), MaxShortLen)
	c.str("model.endpoint", m.GetEndpoint(), MaxEndpointLen)
	c.str("model.identifier", m.GetIdentifier(), MaxIdentifierLen)
	c.str("model.api_key", m.GetApiKey(), MaxAPIKeyLen)
	c.strings("model.trusted_networks", m.GetTrustedNetworks(), MaxTrustedNetworks, MaxCIDRLen)
	c.str("model.fallback_model", m.GetFallbackModel(), MaxNameLen)
	c.str("model.api_version", m.GetApiVersion(), MaxShortLen)
}
