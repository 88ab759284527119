package tokensvc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, msg)
	}
}

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintClaims(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	resp, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c := payload(t, resp.GetToken())
	now := testenv.Start.Unix()
	for _, tc := range []struct {
		claim string
		want  any
	}{
		{"aud", token.Audience},
		{"iss", testenv.Issuer},
		{"sub", e.InstanceID},
		{"gitlab_instance_id", e.InstanceID},
		{"gitlab_realm", "self-managed"},
		{"iat", float64(now)},
		{"nbf", float64(now - 5)},
		{"exp", float64(now + 3600)},
		{"jti", resp.GetJti()},
		// The opaque global user id, never the raw user id.
		{"gitlab_global_user_id", e.GlobalIDs.GlobalUserID(e.Users["user"].ID)},
	} {
		t.Run(tc.claim, func(t *testing.T) {
			if c[tc.claim] != tc.want {
				t.Fatalf("%s = %v, want %v", tc.claim, c[tc.claim], tc.want)
			}
		})
	}
	if got := c["scopes"].([]any); len(got) != 3 {
		t.Fatalf("scopes = %v", got)
	}
	if len(c) != 11 {
		t.Fatalf("claims %v: want exactly the ten GitLab claims and gitlab_global_user_id (no user id)", c)
	}
	if _, err := uuid.Parse(resp.GetJti()); err != nil {
		t.Fatalf("jti %q is not a UUID", resp.GetJti())
	}
	md := resp.GetMetadata()
	want := token.Metadata(resp.GetToken(), e.InstanceID, e.GlobalIDs.GlobalUserID(e.Users["user"].ID))
	if len(md) != len(want) {
		t.Fatalf("metadata %v, want %v", md, want)
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("metadata[%s] = %q, want %q", k, md[k], v)
		}
	}
	if !resp.GetExpireTime().AsTime().Equal(testenv.Start.Add(time.Hour)) {
		t.Fatalf("expire_time = %v", resp.GetExpireTime().AsTime())
	}
	// The published keys verify it, with the checks a gateway makes.
	set, err := jwk.Parse(e.Keys.KeySet().JWKS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(resp.GetToken()), jwt.WithKeySet(set), jwt.WithAudience(token.Audience),
		jwt.WithIssuer(testenv.Issuer), jwt.WithClock(jwt.ClockFunc(e.Clock.Now))); err != nil {
		t.Fatalf("published keys do not verify the token: %v", err)
	}
}

func TestMintScopesAndTTL(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	tests := []struct {
		name       string
		pat        func() string
		features   []string
		ttl        *durationpb.Duration
		wantCode   codes.Code
		wantMsg    string
		wantScopes []string
		wantTTL    time.Duration
	}{
		{name: "empty request grants every entitled feature", pat: func() string { return e.User },
			wantScopes: []string{"complete_code", "duo_chat", "generate_code"}, wantTTL: time.Hour},
		{name: "requested features map to unit primitives", pat: func() string { return e.User },
			features: []string{"code_completions", "code_completions"}, wantScopes: []string{"complete_code"}, wantTTL: time.Hour},
		{name: "unentitled features are dropped", pat: func() string { return e.Chat },
			features: []string{"duo_chat", "code_generations"}, wantScopes: []string{"duo_chat"}, wantTTL: time.Hour},
		{name: "only unentitled features is PermissionDenied", pat: func() string { return e.Chat },
			features: []string{"code_generations"}, wantCode: codes.PermissionDenied, wantMsg: "not entitled"},
		{name: "user with no entitlement is PermissionDenied", pat: func() string { return e.Nothing },
			wantCode: codes.PermissionDenied, wantMsg: "not entitled"},
		{name: "unknown feature is InvalidArgument", pat: func() string { return e.User },
			features: []string{"teleport"}, wantCode: codes.InvalidArgument, wantMsg: `unknown feature "teleport"`},
		{name: "shorter ttl is honoured", pat: func() string { return e.User },
			ttl: durationpb.New(10 * time.Minute), wantScopes: []string{"complete_code", "duo_chat", "generate_code"}, wantTTL: 10 * time.Minute},
		{name: "longer ttl is capped", pat: func() string { return e.User },
			ttl: durationpb.New(48 * time.Hour), wantScopes: []string{"complete_code", "duo_chat", "generate_code"}, wantTTL: time.Hour},
		{name: "negative ttl is InvalidArgument", pat: func() string { return e.User },
			ttl: durationpb.New(-time.Second), wantCode: codes.InvalidArgument, wantMsg: "ttl: must be positive"},
		{name: "gateway identity may not mint", pat: func() string { return e.Gateway },
			wantCode: codes.PermissionDenied, wantMsg: "requires ROLE_USER or ROLE_ADMIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.Tokens().MintToken(testenv.Ctx(tc.pat()), &issuerv1.MintTokenRequest{Features: tc.features, Ttl: tc.ttl})
			if tc.wantCode != codes.OK {
				wantCode(t, err, tc.wantCode, tc.wantMsg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(resp.GetScopes(), ",") != strings.Join(tc.wantScopes, ",") {
				t.Fatalf("scopes = %v, want %v", resp.GetScopes(), tc.wantScopes)
			}
			c := payload(t, resp.GetToken())
			if got := time.Duration(c["exp"].(float64)-c["iat"].(float64)) * time.Second; got != tc.wantTTL {
				t.Fatalf("lifetime %v, want %v", got, tc.wantTTL)
			}
		})
	}
}

func TestRevokeToken(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	mint := func(pat string) string {
		resp, err := e.Tokens().MintToken(testenv.Ctx(pat), &issuerv1.MintTokenRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJti()
	}
	userJTI, chatJTI := mint(e.User), mint(e.Chat)
	tests := []struct {
		name     string
		pat      string
		jti      string
		wantCode codes.Code
		wantMsg  string
	}{
		{"user may not revoke another user's token", e.Chat, userJTI, codes.PermissionDenied, "only their own"},
		{"gateway may not revoke", e.Gateway, userJTI, codes.PermissionDenied, "requires ROLE_USER or ROLE_ADMIN"},
		{"user revokes their own token", e.User, userJTI, codes.OK, ""},
		{"revoking again succeeds", e.User, userJTI, codes.OK, ""},
		{"admin revokes anyone's token", e.Admin, chatJTI, codes.OK, ""},
		{"unknown jti is NotFound", e.Admin, "00000000-0000-0000-0000-000000000000", codes.NotFound, "not found"},
		{"empty jti is InvalidArgument", e.User, "", codes.InvalidArgument, "jti: required"},
		{"no credentials is Unauthenticated", "", userJTI, codes.Unauthenticated, "missing personal access token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.Tokens().RevokeToken(testenv.Ctx(tc.pat), &issuerv1.RevokeTokenRequest{Jti: tc.jti})
			if tc.wantCode != codes.OK {
				wantCode(t, err, tc.wantCode, tc.wantMsg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetRevocation().GetJti() != tc.jti || !resp.GetRevocation().GetExpireTime().AsTime().Equal(testenv.Start.Add(time.Hour)) {
				t.Fatalf("revocation = %v", resp.GetRevocation())
			}
		})
	}
}

func TestWatchRevocationsPushesAndSlowWatchersNeverBlock(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx, cancel := context.WithCancel(testenv.Ctx(e.Gateway))
	defer cancel()
	// A watcher that never reads must not hold up revocations.
	slow, err := e.Tokens().WatchRevocations(ctx, &issuerv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_ = slow
	w, err := e.Tokens().WatchRevocations(ctx, &issuerv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || len(first.GetRevocations()) != 0 {
		t.Fatalf("first batch = %v, %v; want an empty in-sync batch", first, err)
	}
	var jtis []string
	for range 50 {
		resp, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Tokens().RevokeToken(testenv.Ctx(e.User), &issuerv1.RevokeTokenRequest{Jti: resp.GetJti()}); err != nil {
			t.Fatal(err)
		}
		jtis = append(jtis, resp.GetJti())
	}
	got := map[string]bool{}
	for len(got) < len(jtis) {
		resp, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetRevocations() {
			got[r.GetJti()] = true
		}
	}
	for _, j := range jtis {
		if !got[j] {
			t.Fatalf("revocation %s never pushed", j)
		}
	}
	// A new watcher gets every current revocation at once.
	w2, err := e.Tokens().WatchRevocations(ctx, &issuerv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	all, err := w2.Recv()
	if err != nil || len(all.GetRevocations()) != len(jtis) {
		t.Fatalf("initial batch has %d revocations, want %d (%v)", len(all.GetRevocations()), len(jtis), err)
	}

	// Users may not watch.
	uw, err := e.Tokens().WatchRevocations(testenv.Ctx(e.User), &issuerv1.WatchRevocationsRequest{})
	if err == nil {
		_, err = uw.Recv()
	}
	wantCode(t, err, codes.PermissionDenied, "requires ROLE_GATEWAY or ROLE_ADMIN")
}

func TestRevocationsPrunedAfterExpiry(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	resp, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Tokens().RevokeToken(testenv.Ctx(e.User), &issuerv1.RevokeTokenRequest{Jti: resp.GetJti()}); err != nil {
		t.Fatal(err)
	}
	e.Clock.Add(time.Hour)
	if n, err := e.Store.PruneTokens(context.Background(), e.Clock.Now()); err != nil || n != 1 {
		t.Fatalf("PruneTokens = %d, %v; want the expired revocation gone", n, err)
	}
}

func TestMintRateIsPerUser(t *testing.T) {
	e := testenv.New(t, testenv.Options{MintRatePerUser: 2})
	for i := 0; i < 2; i++ {
		if _, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{}); err != nil {
			t.Fatalf("mint %d within the limit: %v", i+1, err)
		}
	}
	_, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "mint rate limit exceeded for this user (2 per minute)" {
		t.Fatalf("third mint = %v, want ResourceExhausted", err)
	}
	if _, err := e.Tokens().MintToken(testenv.Ctx(e.Chat), &issuerv1.MintTokenRequest{}); err != nil {
		t.Fatalf("another user was throttled: %v", err)
	}
}
