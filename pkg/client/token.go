package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/token"
)

// maxJWTLen bounds what TokenFromJWT parses; real tokens are about 1 KB.
const maxJWTLen = 16 << 10

// Token is a minted token and the metadata to forward with it. Its String
// and GoString methods never print the token itself.
type Token struct {
	// AccessToken is the signed JWT, sent as "authorization: Bearer <jwt>".
	AccessToken string
	// ID is the token's jti, used to revoke it. Empty if unknown.
	ID string
	// Expiry is when the token stops being accepted.
	Expiry time.Time
	// Scopes are the unit primitives the token grants.
	Scopes []string
	// Metadata holds the x-gitlab-* gRPC metadata (lower-case keys) sent
	// with the token. It never holds authorization; treat it as read-only.
	Metadata map[string]string
}

// String describes the token without its secret part.
func (t *Token) String() string {
	if t == nil {
		return "<nil token>"
	}
	return fmt.Sprintf("token{jti=%s exp=%s scopes=%v}", t.ID, t.Expiry.UTC().Format(time.RFC3339), t.Scopes)
}

// GoString is String, so %#v cannot print the token either.
func (t *Token) GoString() string { return t.String() }

// requestMetadata returns a fresh map of everything sent with a call.
func (t *Token) requestMetadata() map[string]string {
	md := make(map[string]string, len(t.Metadata)+1)
	maps.Copy(md, t.Metadata)
	md[token.MDAuthorization] = bearer.Format(t.AccessToken)
	return md
}

// tokenFromResponse validates a MintTokenResponse and keeps only the
// x-gitlab-* metadata: authorization is rebuilt from the token itself so the
// two can never disagree.
func tokenFromResponse(resp *issuerv1.MintTokenResponse) (*Token, error) {
	if resp.GetToken() == "" {
		return nil, newError(codes.Internal, "mint token: issuer returned no token")
	}
	if resp.GetExpireTime() == nil {
		return nil, newError(codes.Internal, "mint token: issuer returned no expire_time")
	}
	md := make(map[string]string, len(resp.GetMetadata()))
	for k, v := range resp.GetMetadata() {
		if k = strings.ToLower(k); strings.HasPrefix(k, "x-gitlab-") {
			md[k] = v
		}
	}
	return &Token{
		AccessToken: resp.GetToken(),
		ID:          resp.GetJti(),
		Expiry:      resp.GetExpireTime().AsTime(),
		Scopes:      append([]string(nil), resp.GetScopes()...),
		Metadata:    md,
	}, nil
}

// TokenFromJWT builds a Token from a JWT obtained elsewhere (for example
// `airlockctl token mint`), deriving the forwarded metadata from its claims:
// x-gitlab-instance-id from gitlab_instance_id (else sub), x-gitlab-realm
// from gitlab_realm, x-gitlab-global-user-id from gitlab_global_user_id
// (left out when the token has no such claim), and the authentication type. The
// signature is NOT verified: the gateway does that; this only reads what
// to forward. It returns an InvalidArgument *Error for anything that is
// not a compact JWS whose payload decodes as token.Claims (so a claim of the
// wrong JSON type is refused) with an exp in range.
func TokenFromJWT(jwt string) (*Token, error) {
	jwt = strings.TrimSpace(jwt)
	if len(jwt) > maxJWTLen {
		return nil, newError(codes.InvalidArgument, "jwt: longer than %d bytes", maxJWTLen)
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, newError(codes.InvalidArgument, "jwt: want 3 dot-separated segments, got %d", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, newError(codes.InvalidArgument, "jwt: payload is not base64url")
	}
	var c token.Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, newError(codes.InvalidArgument, "jwt: payload is not a JSON object of claims")
	}
	// An absent or null exp decodes as zero, which the range refuses too.
	if c.Expiry < 1 || c.Expiry > 1<<40 {
		return nil, newError(codes.InvalidArgument, "jwt: exp claim missing or out of range")
	}
	md := map[string]string{token.MDAuthType: token.AuthTypeOIDC}
	inst := c.InstanceID
	if inst == "" {
		inst = c.Subject
	}
	if inst != "" {
		md[token.MDInstanceID] = inst
	}
	if c.Realm != "" {
		md[token.MDRealm] = c.Realm
	}
	if c.GlobalUserID != "" {
		md[token.MDGlobalUserID] = c.GlobalUserID
	}
	return &Token{
		AccessToken: jwt,
		ID:          c.ID,
		Expiry:      time.Unix(int64(c.Expiry), 0),
		Scopes:      c.Scopes,
		Metadata:    md,
	}, nil
}
