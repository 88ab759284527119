package auth

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/pkg/feature"
)

// Identity is what a verified token proves about a request. It is shared
// between requests that present the same token (the verified-token cache
// hands out the same value): treat it, and its Scopes, as read-only.
type Identity struct {
	// JTI is the token id (`jti`); safe to log, unlike the token.
	JTI string
	// Subject is `sub`, the instance UUID.
	Subject string
	// InstanceID is x-gitlab-instance-id, equal to Subject by verification.
	InstanceID string
	// Realm is `gitlab_realm`, equal to x-gitlab-realm by verification.
	Realm string
	// GlobalUserID is x-gitlab-global-user-id. When the token carries the
	// gitlab_global_user_id claim (Airlock's issuer always sets it) the
	// header must equal it, so the value is proven and GlobalUserProven is
	// true. A token without the claim (a real GitLab instance's) proves no
	// user: the value is as sent, and only as trustworthy as that instance.
	GlobalUserID string
	// GlobalUserProven reports that GlobalUserID is bound to the token.
	GlobalUserProven bool
	// Scopes are the unit primitives the token grants.
	Scopes []string
	// Expiry and IssuedAt are `exp` and `iat`.
	Expiry, IssuedAt time.Time
}

// User returns the key every per-user limit, metric and log field uses:
// the proven global user id when the token binds one, else the forwarded
// one (see GlobalUserID).
func (id *Identity) User() string { return id.GlobalUserID }

type identityKey struct{}

// WithIdentity returns a child of ctx carrying id. The auth interceptor
// does this; tests of handlers use it to fake an authenticated caller.
func WithIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity the auth interceptor put in ctx.
func IdentityFrom(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(*Identity)
	return id, ok && id != nil
}

// Authorize checks that the caller's token grants feature f (the legacy
// code_suggestions scope covers both code features). It returns nil, or a
// status error: PermissionDenied "Unauthorized to access <feature>" when the
// scope is missing, as the real gateway words it, and Unauthenticated when
// ctx carries no identity at all (the method was not behind the verifier).
func Authorize(ctx context.Context, f feature.Feature) error {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, MsgNoAuthorization)
	}
	if !f.Allowed(id.Scopes) {
		return status.Error(codes.PermissionDenied, "Unauthorized to access "+featureWords(f))
	}
	return nil
}

// featureWords names f as the real gateway's messages do: "code
// completions", "code generations", "duo chat".
func featureWords(f feature.Feature) string {
	if f == "" {
		return "unknown feature"
	}
	return strings.ReplaceAll(string(f), "_", " ")
}
