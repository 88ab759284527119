// Package token defines the self-issued token that the issuer mints and the
// gateway verifies: its claims, fixed claim values, and the gRPC metadata a
// caller forwards with it. It holds no keys and does no cryptography.
package token

import "time"

// Fixed values of the real system (GitLab self-managed → AI gateway).
const (
	// Audience is the `aud` claim every token carries.
	Audience = "gitlab-ai-gateway"
	// RealmSelfManaged is the `gitlab_realm` claim and x-gitlab-realm value.
	RealmSelfManaged = "self-managed"
	// AuthTypeOIDC is the only accepted x-gitlab-authentication-type.
	AuthTypeOIDC = "oidc"
	// DefaultTTL is the default token lifetime (exp = iat + 1 h).
	DefaultTTL = time.Hour
	// NotBeforeSkew is how far before iat the nbf claim is set.
	NotBeforeSkew = 5 * time.Second
)

// Claim names beyond the registered JWT ones.
const (
	ClaimRealm      = "gitlab_realm"
	ClaimScopes     = "scopes"
	ClaimInstanceID = "gitlab_instance_id"
	// ClaimGlobalUserID binds the token to one user: the gateway requires
	// x-gitlab-global-user-id to equal it when present. Airlock's issuer
	// always sets it; a real GitLab instance's tokens do not carry it.
	ClaimGlobalUserID = "gitlab_global_user_id"
)

// gRPC metadata keys (lower case, as gRPC requires) a caller sends.
const (
	MDAuthorization = "authorization"
	MDAuthType      = "x-gitlab-authentication-type"
	MDInstanceID    = "x-gitlab-instance-id"
	MDRealm         = "x-gitlab-realm"
	MDGlobalUserID  = "x-gitlab-global-user-id"
	MDHostName      = "x-gitlab-host-name"
	MDVersion       = "x-gitlab-version"
	MDRequestID     = "x-request-id"
)

// Claims are the claims of a self-issued token. Subject is the instance
// UUID; there is deliberately no user id claim, only the opaque global
// user id (which names no user without the issuer's secret).
type Claims struct {
	ID         string    // jti, a UUID
	Issuer     string    // iss, the instance URL
	Subject    string    // sub, the instance UUID
	Audience   []string  // aud
	IssuedAt   time.Time // iat
	NotBefore  time.Time // nbf
	Expiry     time.Time // exp
	Realm      string    // gitlab_realm
	Scopes     []string  // scopes (unit primitives)
	InstanceID string    // gitlab_instance_id (optional)
	// GlobalUserID is gitlab_global_user_id (optional): the value
	// x-gitlab-global-user-id must carry.
	GlobalUserID string
}

// Metadata returns the gRPC metadata a caller forwards with tok.
func Metadata(tok, instanceID, globalUserID string) map[string]string {
	return map[string]string{
		MDAuthorization: "Bearer " + tok,
		MDAuthType:      AuthTypeOIDC,
		MDInstanceID:    instanceID,
		MDRealm:         RealmSelfManaged,
		MDGlobalUserID:  globalUserID,
	}
}
