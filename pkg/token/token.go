// Package token defines the self-issued token that the issuer mints and the
// gateway verifies: its claims, fixed claim values, and the gRPC metadata a
// caller forwards with it. It holds no keys and does no cryptography.
package token

import (
	"encoding/json"
	"math"
	"time"

	"github.com/airlock-dev/airlock/pkg/bearer"
)

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

// Claim names: the JSON member names of Claims, in one place so the minter,
// the gateway's strict parser, the discovery document, the client SDK and
// the fakes cannot drift apart.
const (
	ClaimID         = "jti"
	ClaimAudience   = "aud"
	ClaimSubject    = "sub"
	ClaimIssuer     = "iss"
	ClaimIssuedAt   = "iat"
	ClaimNotBefore  = "nbf"
	ClaimExpiry     = "exp"
	ClaimRealm      = "gitlab_realm"
	ClaimScopes     = "scopes"
	ClaimInstanceID = "gitlab_instance_id"
	// ClaimGlobalUserID binds the token to one user: the gateway requires
	// x-gitlab-global-user-id to equal it when present. Airlock's issuer
	// always sets it; a real GitLab instance's tokens do not carry it.
	ClaimGlobalUserID = "gitlab_global_user_id"
)

// ClaimNames returns every claim a token carries: the registered JWT claims
// in RFC 7519 order, then GitLab's own. The slice is new on every call.
func ClaimNames() []string {
	return []string{ClaimIssuer, ClaimSubject, ClaimAudience, ClaimExpiry, ClaimIssuedAt, ClaimNotBefore, ClaimID,
		ClaimRealm, ClaimScopes, ClaimInstanceID, ClaimGlobalUserID}
}

// gRPC metadata keys (lower case, as gRPC requires) a caller sends.
const (
	MDAuthorization = "authorization"
	MDAuthType      = "x-gitlab-authentication-type"
	MDInstanceID    = "x-gitlab-instance-id"
	MDRealm         = "x-gitlab-realm"
	MDGlobalUserID  = "x-gitlab-global-user-id"
	MDHostName      = "x-gitlab-host-name"
	MDVersion       = "x-gitlab-version"
)

// Claims are the claims of a self-issued token, and their JSON encoding is
// the token's payload exactly as GitLab writes it: members in this order,
// aud a single string, times whole NumericDate seconds. Subject is the
// instance UUID; there is deliberately no user id claim, only the opaque
// global user id. The tags must name the Claim* constants (a test checks
// it).
type Claims struct {
	ID         string      `json:"jti"` // a UUID
	Audience   Audiences   `json:"aud"`
	Subject    string      `json:"sub"` // the instance UUID
	Issuer     string      `json:"iss"` // the instance URL
	IssuedAt   NumericDate `json:"iat"`
	NotBefore  NumericDate `json:"nbf"`
	Expiry     NumericDate `json:"exp"`
	Realm      string      `json:"gitlab_realm"`
	Scopes     []string    `json:"scopes"`             // unit primitives
	InstanceID string      `json:"gitlab_instance_id"` // empty in tokens of older GitLab versions
	// GlobalUserID is the value x-gitlab-global-user-id must carry: opaque,
	// naming no user without the issuer's secret. Airlock's issuer always
	// sets it; a real GitLab instance's tokens do not carry it.
	GlobalUserID string `json:"gitlab_global_user_id,omitempty"`
}

// NumericDate is an RFC 7519 NumericDate: seconds since the epoch. A whole
// number of seconds encodes as a JSON integer. Decoding accepts any JSON
// number (a fraction, an exponent, a value out of any sane range: range
// checks belong to the reader) and refuses a string; null leaves it zero.
type NumericDate float64

// NewNumericDate returns t as a NumericDate, truncated to whole seconds.
func NewNumericDate(t time.Time) NumericDate { return NumericDate(t.Unix()) }

// Time returns d as a time, to the nanosecond. d must be in range for
// time.Time (callers check their own bounds first).
func (d NumericDate) Time() time.Time {
	sec := math.Floor(float64(d))
	return time.Unix(int64(sec), int64((float64(d)-sec)*1e9))
}

// Audiences is the aud claim. GitLab writes one audience as a JSON string;
// RFC 7519 §4.1.3 also allows an array, so both decode. It encodes as a
// string when it holds exactly one value, else as an array.
type Audiences []string

// MarshalJSON implements json.Marshaler.
func (a Audiences) MarshalJSON() ([]byte, error) {
	switch len(a) {
	case 0:
		return []byte("[]"), nil
	case 1:
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}

// UnmarshalJSON implements json.Unmarshaler. It returns an error for
// anything but a string, an array of strings or null.
func (a *Audiences) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*a = Audiences{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(b, &ss); err != nil {
		return err
	}
	*a = ss
	return nil
}

// Metadata returns the gRPC metadata a caller forwards with tok.
func Metadata(tok, instanceID, globalUserID string) map[string]string {
	return map[string]string{
		MDAuthorization: bearer.Format(tok),
		MDAuthType:      AuthTypeOIDC,
		MDInstanceID:    instanceID,
		MDRealm:         RealmSelfManaged,
		MDGlobalUserID:  globalUserID,
	}
}
