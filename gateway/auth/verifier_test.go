package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type rejectLog struct {
	mu      sync.Mutex
	reasons []string
}

func (r *rejectLog) add(reason string) {
	r.mu.Lock()
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
}

func (r *rejectLog) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reasons) == 0 {
		return ""
	}
	return r.reasons[len(r.reasons)-1]
}

func newTestVerifier(t testing.TB, keys KeyLookup, revoked func(string) bool, mod ...func(*Config)) (*Verifier, *rejectLog) {
	t.Helper()
	log := &rejectLog{}
	cfg := Config{
		Keys:     keys,
		Revoked:  revoked,
		Issuer:   testIssuer,
		Now:      func() time.Time { return testNow },
		OnReject: log.add,
	}
	for _, m := range mod {
		m(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v, log
}

func TestVerifyAcceptsGoodTokens(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA, kRSA2, kES, kEd)
	c := goodClaims()
	tests := []struct {
		name string
		tok  string
		md   func(string) metadata.MD
	}{
		{"RS256 with kid", mint(t, kRSA, c), goodMD},
		{"RS256 signed by the second published key", mint(t, kRSA2, c), goodMD},
		{"ES256", mint(t, kES, c), goodMD},
		{"EdDSA", mint(t, kEd, c), goodMD},
		{"no kid is tried against every key", mintNoKID(t, kRSA2, c), goodMD},
		{"aud as a single string", mint(t, kRSA, with(c, "aud", token.Audience)), goodMD},
		{"aud among several", mint(t, kRSA, with(c, "aud", []string{"other", token.Audience})), goodMD},
		{"legacy token without gitlab_instance_id", mint(t, kRSA, with(c, "gitlab_instance_id", nil)), goodMD},
		{"expired but within leeway", mint(t, kRSA, with(c, "iat", testNow.Add(-time.Hour-10*time.Second).Unix(), "exp", testNow.Add(-10*time.Second).Unix())), goodMD},
		{"nbf slightly ahead within leeway", mint(t, kRSA, with(c, "nbf", testNow.Add(20*time.Second).Unix())), goodMD},
		{"fractional NumericDate", mint(t, kRSA, with(c, "exp", float64(testNow.Add(time.Minute).Unix())+0.5)), goodMD},
		{"unknown claims and header parameters ignored", signRaw(t, jwa.RS256, kRSA.priv, `{"alg":"RS256","kid":"rsa-1","x-extra":{"a":[1,2]}}`, mustJSON(t, with(c, "extra", map[string]any{"nested": []any{"x", 1.5, nil}}))), goodMD},
		{"token without gitlab_global_user_id (a real GitLab instance's)", mint(t, kRSA, with(c, "gitlab_global_user_id", nil)), goodMD},
		{"lowercase bearer scheme", mint(t, kRSA, c), func(tok string) metadata.MD { return mdWith(goodMD(tok), "authorization", "bearer "+tok) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, keys, nil)
			id, err := v.Verify(context.Background(), tt.md(tt.tok))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.JTI != c["jti"] || id.Subject != testInstance || id.InstanceID != testInstance ||
				id.Realm != token.RealmSelfManaged || id.GlobalUserID != testUser {
				t.Errorf("identity = %+v", id)
			}
			// Only a token that carries the claim proves the user.
			if wantProven := !strings.Contains(tt.name, "without gitlab_global_user_id"); id.GlobalUserProven != wantProven {
				t.Errorf("GlobalUserProven = %v, want %v", id.GlobalUserProven, wantProven)
			}
			if tt.name == "RS256 with kid" {
				if len(id.Scopes) != 2 || !id.Expiry.Equal(testNow.Add(59*time.Minute)) || !id.IssuedAt.Equal(testNow.Add(-time.Minute)) {
					t.Errorf("identity claims = %+v", id)
				}
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	loadKeys(t)
	c := goodClaims()
	good := mint(t, kRSA, c)
	hdr := func(extra string) string { return `{"alg":"RS256","kid":"rsa-1"` + extra + `}` }
	segs := strings.Split(good, ".")

	pubDER, err := x509.MarshalPKIXPublicKey(&kRSA.priv.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs256 := func(key []byte) string {
		in := enc(`{"alg":"HS256","kid":"rsa-1","typ":"JWT"}`) + "." + enc(mustJSON(t, c))
		m := hmac.New(sha256.New, key)
		m.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	rogueJWK := mustJSON(t, kRogue.pub)

	forbidden := func(reason string) (codes.Code, string, string) {
		return codes.Unauthenticated, MsgForbidden, reason
	}
	type want struct {
		code   codes.Code
		msg    string
		reason string
	}
	w := func(c codes.Code, m, r string) want { return want{c, m, r} }
	f := func(r string) want { return w(forbidden(r)) }

	tests := []struct {
		name string
		md   metadata.MD
		keys *fakeKeys // default: kRSA, kRSA2, kES, kEd published
		want want
	}{
		// Metadata.
		{name: "no metadata at all", md: nil, want: w(codes.Unauthenticated, MsgNoAuthorization, ReasonNoAuthorization)},
		{name: "no authorization header", md: mdWith(goodMD(good), "authorization", "<delete>"), want: w(codes.Unauthenticated, MsgNoAuthorization, ReasonNoAuthorization)},
		{name: "basic scheme", md: mdWith(goodMD(good), "authorization", "Basic dXNlcjpwYXNz"), want: w(codes.Unauthenticated, MsgBadAuthorization, ReasonBadAuthorization)},
		{name: "bearer without token", md: mdWith(goodMD(good), "authorization", "Bearer "), want: w(codes.Unauthenticated, MsgBadAuthorization, ReasonBadAuthorization)},
		{name: "bare token without scheme", md: mdWith(goodMD(good), "authorization", good), want: w(codes.Unauthenticated, MsgBadAuthorization, ReasonBadAuthorization)},
		{name: "bearer with two tokens", md: mdWith(goodMD(good), "authorization", "Bearer "+good+" "+good), want: w(codes.Unauthenticated, MsgBadAuthorization, ReasonBadAuthorization)},
		{name: "two authorization values", md: func() metadata.MD { m := goodMD(good); m.Append("authorization", "Bearer "+good); return m }(), want: w(codes.Unauthenticated, MsgBadAuthorization, ReasonBadAuthorization)},
		{name: "no authentication type", md: mdWith(goodMD(good), token.MDAuthType, "<delete>"), want: w(codes.Unauthenticated, MsgBadAuthType, ReasonBadAuthType)},
		{name: "authentication type not oidc", md: mdWith(goodMD(good), token.MDAuthType, "oauth2"), want: w(codes.Unauthenticated, MsgBadAuthType, ReasonBadAuthType)},
		{name: "oversize token refused before parsing", md: goodMD(good + strings.Repeat("A", DefaultMaxTokenBytes)), want: f(ReasonTooLarge)},

		// JWS structure.
		{name: "two segments", md: goodMD(segs[0] + "." + segs[1]), want: f(ReasonMalformed)},
		{name: "four segments", md: goodMD(good + ".AAAA"), want: f(ReasonMalformed)},
		{name: "empty signature segment", md: goodMD(segs[0] + "." + segs[1] + "."), want: f(ReasonMalformed)},
		{name: "malformed base64 in header", md: goodMD("e30!." + segs[1] + "." + segs[2]), want: f(ReasonMalformed)},
		{name: "padded base64 signature", md: goodMD(segs[0] + "." + segs[1] + "." + segs[2] + "="), want: f(ReasonMalformed)},
		{name: "standard base64 alphabet", md: goodMD(segs[0] + "." + segs[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(segs[2]) + "+/"), want: f(ReasonMalformed)},
		{name: "header is not JSON", md: goodMD(enc("alg=RS256") + "." + segs[1] + "." + segs[2]), want: f(ReasonMalformed)},
		{name: "header JSON is an array", md: goodMD(enc(`["RS256"]`) + "." + segs[1] + "." + segs[2]), want: f(ReasonMalformed)},
		{name: "duplicate alg in header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, `{"alg":"none","alg":"RS256","kid":"rsa-1"}`, mustJSON(t, c))), want: f(ReasonMalformed)},
		{name: "alg of the wrong type", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, `{"alg":["RS256"],"kid":"rsa-1"}`, mustJSON(t, c))), want: f(ReasonMalformed)},

		// Algorithms and keys.
		{name: "alg none", md: goodMD(enc(`{"alg":"none","kid":"rsa-1"}`) + "." + enc(mustJSON(t, c)) + ".AA"), want: f(ReasonBadAlgorithm)},
		{name: "HS256 keyed with the public key PEM", md: goodMD(hs256(pubPEM)), want: f(ReasonBadAlgorithm)},
		{name: "HS256 keyed with the public key DER", md: goodMD(hs256(pubDER)), want: f(ReasonBadAlgorithm)},
		{name: "PS256 is not allowed", md: goodMD(signRaw(t, jwa.PS256, kRSA.priv, `{"alg":"PS256","kid":"rsa-1"}`, mustJSON(t, c))), want: f(ReasonBadAlgorithm)},
		{name: "ES256 header on an RSA kid", md: goodMD(signRaw(t, jwa.ES256, kES.priv, `{"alg":"ES256","kid":"rsa-1"}`, mustJSON(t, c))), want: f(ReasonBadAlgorithm)},
		{name: "RS256 header on an EC kid", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, `{"alg":"RS256","kid":"es-1"}`, mustJSON(t, c))), want: f(ReasonBadAlgorithm)},
		{name: "jku header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(`,"jku":"https://attacker.test/jwks"`), mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "x5u header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(`,"x5u":"https://attacker.test/cert"`), mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "embedded jwk of the signing key", md: goodMD(signRaw(t, jwa.RS256, kRogue.priv, `{"alg":"RS256","jwk":`+rogueJWK+`}`, mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "x5c header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(`,"x5c":["MIIB"]`), mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "crit header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(`,"crit":["exp"],"exp":1`), mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "b64 header", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(`,"b64":false`), mustJSON(t, c))), want: f(ReasonBadHeader)},
		{name: "signed by a never-published key under a published kid", md: goodMD(signRaw(t, jwa.RS256, kRogue.priv, hdr(""), mustJSON(t, c))), want: f(ReasonBadSignature)},
		{name: "signed by a never-published key under its own kid", md: goodMD(mint(t, kRogue, c)), want: f(ReasonUnknownKey)},
		{name: "signed by a key removed after rotation", md: goodMD(mint(t, kRemoved, c)), want: f(ReasonUnknownKey)},
		{name: "no kid and signed by no published key", md: goodMD(mintNoKID(t, kRogue, c)), want: f(ReasonBadSignature)},
		{name: "no kid with an algorithm no key has", md: goodMD(signRaw(t, jwa.ES256, kES.priv, `{"alg":"ES256"}`, mustJSON(t, c))), keys: newFakeKeys(kRSA), want: f(ReasonBadAlgorithm)},
		{name: "payload tampered after signing", md: goodMD(segs[0] + "." + enc(mustJSON(t, with(c, "scopes", []string{"generate_code"}))) + "." + segs[2]), want: f(ReasonBadSignature)},
		{name: "signature truncated", md: goodMD(segs[0] + "." + segs[1] + "." + segs[2][:40]), want: f(ReasonBadSignature)},
		{name: "no key set loaded", md: goodMD(good), keys: &fakeKeys{err: keyset.ErrNoKeys}, want: w(codes.Unavailable, MsgUnavailable, ReasonNoKeys)},
		{name: "key set stale", md: goodMD(good), keys: &fakeKeys{err: keyset.ErrStale}, want: w(codes.Unavailable, MsgUnavailable, ReasonNoKeys)},
		{name: "no kid and no key set", md: goodMD(mintNoKID(t, kRSA, c)), keys: &fakeKeys{err: keyset.ErrNoKeys}, want: w(codes.Unavailable, MsgUnavailable, ReasonNoKeys)},

		// Payload.
		{name: "payload JSON is an array", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), `[1,2]`)), want: f(ReasonMalformed)},
		{name: "payload JSON is a string", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), `"claims"`)), want: f(ReasonMalformed)},
		{name: "payload is not JSON", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), `exp=1`)), want: f(ReasonMalformed)},
		{name: "payload JSON with trailing data", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), mustJSON(t, c)+`{}`)), want: f(ReasonMalformed)},
		{name: "duplicate exp claim", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), strings.TrimSuffix(mustJSON(t, c), "}")+`,"exp":99999999999}`)), want: f(ReasonMalformed)},
		{name: "duplicate exp hidden by an escape", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), strings.TrimSuffix(mustJSON(t, c), "}")+`,"\u0065xp":99999999}`)), want: f(ReasonMalformed)},
		{name: "duplicate sub claim", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), strings.TrimSuffix(mustJSON(t, c), "}")+`,"sub":"other"}`)), want: f(ReasonMalformed)},
		{name: "numeric string exp", md: goodMD(mint(t, kRSA, with(c, "exp", "1772370000"))), want: f(ReasonMalformed)},
		{name: "null exp", md: goodMD(signRaw(t, jwa.RS256, kRSA.priv, hdr(""), mustJSON(t, with(c, "exp", nil))[:1]+`"exp":null,`+mustJSON(t, with(c, "exp", nil))[1:])), want: f(ReasonMalformed)},
		{name: "negative exp", md: goodMD(mint(t, kRSA, with(c, "exp", -1))), want: f(ReasonMalformed)},
		{name: "aud of the wrong type", md: goodMD(mint(t, kRSA, with(c, "aud", 7))), want: f(ReasonMalformed)},
		{name: "scopes as a string", md: goodMD(mint(t, kRSA, with(c, "scopes", "complete_code"))), want: f(ReasonMalformed)},
		{name: "sub of the wrong type", md: goodMD(mint(t, kRSA, with(c, "sub", 42))), want: f(ReasonMalformed)},

		// Claims.
		{name: "wrong issuer", md: goodMD(mint(t, kRSA, with(c, "iss", "https://other.example.test"))), want: f(ReasonBadIssuer)},
		{name: "issuer with trailing slash", md: goodMD(mint(t, kRSA, with(c, "iss", testIssuer+"/"))), want: f(ReasonBadIssuer)},
		{name: "no issuer", md: goodMD(mint(t, kRSA, with(c, "iss", nil))), want: f(ReasonBadIssuer)},
		{name: "wrong audience", md: goodMD(mint(t, kRSA, with(c, "aud", []string{"gitlab-other"}))), want: f(ReasonBadAudience)},
		{name: "empty audience list", md: goodMD(mint(t, kRSA, with(c, "aud", []string{}))), want: f(ReasonBadAudience)},
		{name: "no audience", md: goodMD(mint(t, kRSA, with(c, "aud", nil))), want: f(ReasonBadAudience)},
		{name: "no exp", md: goodMD(mint(t, kRSA, with(c, "exp", nil))), want: f(ReasonMissingClaim)},
		{name: "no iat", md: goodMD(mint(t, kRSA, with(c, "iat", nil))), want: f(ReasonMissingClaim)},
		{name: "no jti", md: goodMD(mint(t, kRSA, with(c, "jti", nil))), want: f(ReasonMissingClaim)},
		{name: "empty jti", md: goodMD(mint(t, kRSA, with(c, "jti", ""))), want: f(ReasonMissingClaim)},
		{name: "no realm claim", md: goodMD(mint(t, kRSA, with(c, "gitlab_realm", nil))), want: f(ReasonMissingClaim)},
		{name: "expired beyond leeway", md: goodMD(mint(t, kRSA, with(c, "iat", testNow.Add(-2*time.Hour).Unix(), "exp", testNow.Add(-31*time.Second).Unix()))), want: f(ReasonExpired)},
		{name: "nbf in the future beyond leeway", md: goodMD(mint(t, kRSA, with(c, "nbf", testNow.Add(time.Minute).Unix()))), want: f(ReasonNotYetValid)},
		{name: "iat in the future beyond leeway", md: goodMD(mint(t, kRSA, with(c, "iat", testNow.Add(time.Minute).Unix(), "nbf", nil))), want: f(ReasonNotYetValid)},
		{name: "lifetime over the maximum", md: goodMD(mint(t, kRSA, with(c, "exp", testNow.Add(3*time.Hour).Unix()))), want: f(ReasonLifetime)},
		{name: "exp before iat", md: goodMD(mint(t, kRSA, with(c, "iat", testNow.Unix(), "nbf", nil, "exp", testNow.Add(-time.Second).Unix()))), want: f(ReasonLifetime)},
		{name: "revoked jti", md: goodMD(mint(t, kRSA, with(c, "jti", "revoked-jti"))), want: f(ReasonRevoked)},

		// Headers against claims.
		{name: "token for another instance id", md: goodMD(mint(t, kRSA, with(c, "sub", "other-instance", "gitlab_instance_id", "other-instance"))), want: w(codes.Unauthenticated, MsgInstanceMismatch, ReasonInstanceMismatch)},
		{name: "instance id header of another instance", md: mdWith(goodMD(good), token.MDInstanceID, "other-instance"), want: w(codes.Unauthenticated, MsgInstanceMismatch, ReasonInstanceMismatch)},
		{name: "no instance id header", md: mdWith(goodMD(good), token.MDInstanceID, "<delete>"), want: w(codes.Unauthenticated, MsgInstanceMismatch, ReasonInstanceMismatch)},
		{name: "gitlab_instance_id claim differs from sub", md: goodMD(mint(t, kRSA, with(c, "gitlab_instance_id", "other-instance"))), want: w(codes.Unauthenticated, MsgInstanceMismatch, ReasonInstanceMismatch)},
		{name: "realm header differs", md: mdWith(goodMD(good), token.MDRealm, "saas"), want: w(codes.Unauthenticated, MsgRealmMismatch, ReasonRealmMismatch)},
		{name: "no realm header", md: mdWith(goodMD(good), token.MDRealm, "<delete>"), want: w(codes.Unauthenticated, MsgRealmMismatch, ReasonRealmMismatch)},
		{name: "global user id header of another user", md: mdWith(goodMD(good), token.MDGlobalUserID, "someone-else"), want: w(codes.Unauthenticated, MsgGlobalUserMismatch, ReasonGlobalUserMismatch)},
		{name: "no global user id header with the claim present", md: mdWith(goodMD(good), token.MDGlobalUserID, "<delete>"), want: w(codes.Unauthenticated, MsgGlobalUserMismatch, ReasonGlobalUserMismatch)},
		{name: "global user id header repeated", md: func() metadata.MD { m := goodMD(good); m.Append(token.MDGlobalUserID, testUser); return m }(), want: w(codes.Unauthenticated, MsgGlobalUserMismatch, ReasonGlobalUserMismatch)},
		{name: "global user id header differs only in case", md: mdWith(goodMD(good), token.MDGlobalUserID, strings.ToUpper(testUser)), want: w(codes.Unauthenticated, MsgGlobalUserMismatch, ReasonGlobalUserMismatch)},
		{name: "oversized global user id header on a token without the claim", md: mdWith(goodMD(mint(t, kRSA, with(c, "gitlab_global_user_id", nil))), token.MDGlobalUserID, strings.Repeat("u", MaxGlobalUserIDBytes+1)), want: w(codes.Unauthenticated, MsgGlobalUserMismatch, ReasonGlobalUserMismatch)},
		{name: "empty gitlab_global_user_id claim", md: mdWith(goodMD(mint(t, kRSA, with(c, "gitlab_global_user_id", ""))), token.MDGlobalUserID, "<delete>"), want: f(ReasonMissingClaim)},
		{name: "gitlab_global_user_id claim of the wrong type", md: goodMD(mint(t, kRSA, with(c, "gitlab_global_user_id", 7))), want: f(ReasonMalformed)},
	}
	revoked := (&revokedSet{m: map[string]bool{"revoked-jti": true}}).Revoked
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.keys
			if keys == nil {
				keys = newFakeKeys(kRSA, kRSA2, kES, kEd)
			}
			v, log := newTestVerifier(t, keys, revoked)
			// Twice: the second call must not be let through by the cache.
			for i := 0; i < 2; i++ {
				id, err := v.Verify(context.Background(), tt.md)
				if err == nil {
					t.Fatalf("Verify accepted the request: %+v", id)
				}
				st, _ := status.FromError(err)
				if st.Code() != tt.want.code || st.Message() != tt.want.msg {
					t.Fatalf("Verify = %v %q, want %v %q", st.Code(), st.Message(), tt.want.code, tt.want.msg)
				}
				if got := log.last(); got != tt.want.reason {
					t.Fatalf("rejection reason = %q, want %q", got, tt.want.reason)
				}
			}
		})
	}
	if len(tests) < 30 {
		t.Fatalf("only %d cases", len(tests))
	}
}
