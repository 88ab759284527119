package client

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

func jwtWith(payload string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc([]byte(payload)) + ".c2ln"
}

func TestTokenFromJWT(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jwt    string
		msg    string // expected InvalidArgument message; "" means success
		inst   string
		realm  string
		user   string
		expiry time.Time
	}{
		{name: "instance id claim wins over sub", jwt: jwtWith(`{"jti":"j","sub":"s","gitlab_instance_id":"i","gitlab_realm":"self-managed","exp":1767225600,"scopes":["duo_chat"]}`),
			inst: "i", realm: "self-managed", expiry: time.Unix(1767225600, 0)},
		{name: "global user id is forwarded from the claim", jwt: jwtWith(`{"sub":"s","gitlab_global_user_id":"Zm9v+/8=","exp":1767225600}`),
			inst: "s", user: "Zm9v+/8=", expiry: time.Unix(1767225600, 0)},
		{name: "sub is the instance id without the claim", jwt: jwtWith(`{"sub":"s","exp":1767225600}`), inst: "s", expiry: time.Unix(1767225600, 0)},
		{name: "surrounding whitespace is ignored", jwt: " " + jwtWith(`{"exp":1767225600}`) + "\n", expiry: time.Unix(1767225600, 0)},
		{name: "two segments", jwt: "a.b", msg: "jwt: want 3 dot-separated segments, got 2"},
		{name: "four segments", jwt: "a.b.c.d", msg: "jwt: want 3 dot-separated segments, got 4"},
		{name: "payload not base64url", jwt: "a.!!!.c", msg: "jwt: payload is not base64url"},
		{name: "payload not an object", jwt: jwtWith(`[1,2]`), msg: "jwt: payload is not a JSON object of claims"},
		{name: "exp as a numeric string", jwt: jwtWith(`{"exp":"1767225600"}`), msg: "jwt: payload is not a JSON object of claims"},
		{name: "exp missing", jwt: jwtWith(`{"sub":"s"}`), msg: "jwt: exp claim missing or out of range"},
		{name: "exp negative", jwt: jwtWith(`{"exp":-1}`), msg: "jwt: exp claim missing or out of range"},
		{name: "exp absurdly large", jwt: jwtWith(`{"exp":1e300}`), msg: "jwt: exp claim missing or out of range"},
		{name: "oversize", jwt: strings.Repeat("a", maxJWTLen+1), msg: "jwt: longer than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := TokenFromJWT(tc.jwt)
			if tc.msg != "" {
				e := FromError(err)
				if e == nil || e.Code != codes.InvalidArgument || e.Message != tc.msg {
					t.Fatalf("err = %v, want InvalidArgument: %s", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.Metadata["x-gitlab-instance-id"] != tc.inst || tok.Metadata["x-gitlab-realm"] != tc.realm ||
				tok.Metadata["x-gitlab-global-user-id"] != tc.user ||
				tok.Metadata["x-gitlab-authentication-type"] != "oidc" || !tok.Expiry.Equal(tc.expiry) {
				t.Fatalf("token = %v metadata = %v", tok, tok.Metadata)
			}
			if tok.AccessToken != strings.TrimSpace(tc.jwt) {
				t.Fatalf("access token not kept verbatim")
			}
		})
	}
}

// FuzzTokenFromJWT checks that any input either parses into a token whose
// forwarded metadata is well formed or fails with InvalidArgument, and
// never panics.
func FuzzTokenFromJWT(f *testing.F) {
	f.Add(jwtWith(`{"sub":"s","exp":1767225600,"gitlab_realm":"self-managed"}`))
	f.Add(jwtWith(`{"exp":1.5}`))
	f.Add("a.b.c")
	f.Add("..")
	f.Add(jwtWith(`{"exp":1767225600,"exp":1}`))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := TokenFromJWT(s)
		if err != nil {
			if FromError(err).Code != codes.InvalidArgument {
				t.Fatalf("error code %v for %q", FromError(err).Code, s)
			}
			return
		}
		if tok.Expiry.Unix() <= 0 {
			t.Fatalf("non-positive expiry for %q", s)
		}
		if _, ok := tok.Metadata["authorization"]; ok {
			t.Fatal("authorization must come from the token, not the claims")
		}
		if got := tok.requestMetadata()["authorization"]; got != "Bearer "+strings.TrimSpace(s) {
			t.Fatalf("authorization = %q", got)
		}
	})
}
