package auth

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestCacheHitSkipsSignatureButRechecksRequest(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA, kRSA2)
	rev := &revokedSet{}
	v, log := newTestVerifier(t, keys, rev.Revoked)
	tok := mint(t, kRSA, goodClaims())
	ctx := context.Background()

	first, err := v.Verify(ctx, goodMD(tok))
	if err != nil {
		t.Fatal(err)
	}
	second, err := v.Verify(ctx, goodMD(tok))
	if err != nil {
		t.Fatal(err)
	}
	if first != second || keys.lookups != 1 {
		t.Fatalf("second call was not a cache hit: same identity %v, lookups %d", first == second, keys.lookups)
	}

	// The token binds its user: another global user id on a hit is refused.
	_, err = v.Verify(ctx, mdWith(goodMD(tok), token.MDGlobalUserID, "someone-else"))
	if status.Convert(err).Message() != MsgGlobalUserMismatch {
		t.Fatalf("hit with another global user id: %v", err)
	}
	// A token without the claim proves no user: a different forwarded value
	// on a hit gets its own identity value, the cached one is untouched.
	legacy := mint(t, kRSA, with(goodClaims(), "gitlab_global_user_id", nil, "jti", "legacy"))
	lfirst, err := v.Verify(ctx, goodMD(legacy))
	if err != nil {
		t.Fatal(err)
	}
	other, err := v.Verify(ctx, mdWith(goodMD(legacy), token.MDGlobalUserID, "someone-else"))
	if err != nil || other.GlobalUserID != "someone-else" || lfirst.GlobalUserID == "someone-else" || other.GlobalUserProven {
		t.Fatalf("hit with another global user id on an unbound token: %+v, %v", other, err)
	}

	// Headers are rechecked on a hit.
	_, err = v.Verify(ctx, mdWith(goodMD(tok), token.MDInstanceID, "other"))
	if status.Convert(err).Message() != MsgInstanceMismatch {
		t.Fatalf("hit with another instance id: %v", err)
	}
	_, err = v.Verify(ctx, mdWith(goodMD(tok), token.MDAuthType, "pat"))
	if status.Convert(err).Message() != MsgBadAuthType {
		t.Fatalf("hit with a bad auth type: %v", err)
	}

	// Revocation is checked on a hit, before any eviction.
	rev.add(first.JTI)
	if _, err := v.Verify(ctx, goodMD(tok)); status.Convert(err).Message() != MsgForbidden || log.last() != ReasonRevoked {
		t.Fatalf("revoked token on a hit: %v (%s)", err, log.last())
	}
	v.Evict(first.JTI)
	v.Evict(lfirst.JTI)
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries after Evict", n)
	}
}

func TestCacheDropsTokensOfRemovedKeys(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA, kRSA2)
	v, log := newTestVerifier(t, keys, nil)
	tok := mint(t, kRSA, goodClaims())
	if _, err := v.Verify(context.Background(), goodMD(tok)); err != nil {
		t.Fatal(err)
	}
	keys.set(kRSA2) // rotation removed kRSA; nobody called EvictKey
	_, err := v.Verify(context.Background(), goodMD(tok))
	if status.Convert(err).Message() != MsgForbidden || log.last() != ReasonUnknownKey {
		t.Fatalf("token of a removed key: %v (%s)", err, log.last())
	}

	// EvictKey frees the entries at once.
	keys.set(kRSA, kRSA2)
	if _, err := v.Verify(context.Background(), goodMD(tok)); err != nil {
		t.Fatal(err)
	}
	v.EvictKey(kRSA.kid())
	if n := v.cache.len(); n != 0 {
		t.Fatalf("cache holds %d entries after EvictKey", n)
	}
}

func TestCacheHitOnStaleKeySetFailsClosed(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA)
	v, _ := newTestVerifier(t, keys, nil)
	tok := mint(t, kRSA, goodClaims())
	if _, err := v.Verify(context.Background(), goodMD(tok)); err != nil {
		t.Fatal(err)
	}
	keys.mu.Lock()
	keys.err = errStaleForTest
	keys.mu.Unlock()
	if _, err := v.Verify(context.Background(), goodMD(tok)); status.Code(err) != codes.Unavailable {
		t.Fatalf("cached token with a stale key set: %v, want Unavailable", err)
	}
}

func TestCacheEntryExpiresWithTheToken(t *testing.T) {
	loadKeys(t)
	keys := newFakeKeys(kRSA)
	now := testNow
	v, _ := newTestVerifier(t, keys, nil, func(c *Config) { c.Now = func() time.Time { return now } })
	tok := mint(t, kRSA, goodClaims()) // exp = testNow + 59m
	if _, err := v.Verify(context.Background(), goodMD(tok)); err != nil {
		t.Fatal(err)
	}
	now = testNow.Add(59*time.Minute + 31*time.Second)
	if _, err := v.Verify(context.Background(), goodMD(tok)); status.Convert(err).Message() != MsgForbidden {
		t.Fatalf("expired cached token: %v", err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	loadKeys(t)
	v, _ := newTestVerifier(t, newFakeKeys(kEd), nil, func(c *Config) { c.CacheSize = 64 })
	for i := 0; i < 500; i++ {
		tok := mint(t, kEd, with(goodClaims(), "jti", time.Duration(i).String()))
		if _, err := v.Verify(context.Background(), goodMD(tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := v.cache.len(); n > 64+cacheShards {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
}

func TestRejectionsAreCountedByReason(t *testing.T) {
	loadKeys(t)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := NewMetrics(reg); err != nil || again == nil {
		t.Fatalf("registering twice: %v", err)
	}
	v, _ := newTestVerifier(t, newFakeKeys(kRSA), nil, func(c *Config) { c.Metrics = m })
	ctx := context.Background()
	_, _ = v.Verify(ctx, nil)
	_, _ = v.Verify(ctx, nil)
	_, _ = v.Verify(ctx, goodMD(mint(t, kRSA, with(goodClaims(), "iss", "x"))))
	if got := testutil.ToFloat64(m.rejections.WithLabelValues(ReasonNoAuthorization)); got != 2 {
		t.Errorf("no_authorization = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.rejections.WithLabelValues(ReasonBadIssuer)); got != 1 {
		t.Errorf("bad_issuer = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.rejections); n != len(Reasons) {
		t.Errorf("%d series, want every reason pre-initialised (%d)", n, len(Reasons))
	}
}

func TestNewVerifierRequiresKeysAndIssuer(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no keys", Config{Issuer: testIssuer}},
		{"no issuer", Config{Keys: newFakeKeys()}},
		{"blank issuer", Config{Keys: newFakeKeys(), Issuer: "  "}},
		{"negative token size", Config{Keys: newFakeKeys(), Issuer: testIssuer, MaxTokenBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewVerifier(tt.cfg); err == nil {
				t.Fatal("NewVerifier accepted the config")
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	tests := []struct {
		name    string
		scopes  []string
		f       feature.Feature
		wantErr string
	}{
		{"complete_code grants code completions", []string{"complete_code"}, feature.CodeCompletions, ""},
		{"legacy code_suggestions grants code generations", []string{"code_suggestions"}, feature.CodeGenerations, ""},
		{"legacy code_suggestions does not grant chat", []string{"code_suggestions"}, feature.DuoChat, "Unauthorized to access duo chat"},
		{"missing scope for completions", []string{"duo_chat"}, feature.CodeCompletions, "Unauthorized to access code completions"},
		{"missing scope for generations", nil, feature.CodeGenerations, "Unauthorized to access code generations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := WithIdentity(context.Background(), &Identity{Scopes: tt.scopes})
			err := Authorize(ctx, tt.f)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != tt.wantErr {
				t.Fatalf("Authorize = %v", err)
			}
		})
	}
	if err := Authorize(context.Background(), feature.DuoChat); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Authorize without identity = %v", err)
	}
}

// echoService answers with the identity the interceptor verified and the
// authorization result for the requested feature.
type echoService struct {
	gatewayv1.UnimplementedCompletionServiceServer
}

func (echoService) Complete(ctx context.Context, req *gatewayv1.CompleteRequest) (*gatewayv1.CompleteResponse, error) {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no identity")
	}
	if err := Authorize(ctx, feature.Feature(req.GetFeature())); err != nil {
		return nil, err
	}
	return &gatewayv1.CompleteResponse{Text: id.JTI}, nil
}

func TestAuthFuncThroughTheInterceptorChain(t *testing.T) {
	loadKeys(t)
	v, _ := newTestVerifier(t, newFakeKeys(kRSA), nil)
	srv, _ := rpcserver.New(rpcserver.Options{Logger: zerolog.Nop(), Auth: v.AuthFunc})
	gatewayv1.RegisterCompletionServiceServer(srv, echoService{})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := gatewayv1.NewCompletionServiceClient(cc)
	tok := mint(t, kRSA, goodClaims())

	tests := []struct {
		name     string
		md       metadata.MD
		feature  feature.Feature
		wantCode codes.Code
		wantMsg  string
	}{
		{"valid token and scope", goodMD(tok), feature.CodeCompletions, codes.OK, ""},
		{"no token", metadata.MD{}, feature.CodeCompletions, codes.Unauthenticated, MsgNoAuthorization},
		{"forged token", goodMD(mint(t, kRogue, goodClaims())), feature.CodeCompletions, codes.Unauthenticated, MsgForbidden},
		{"valid token without the feature's scope", goodMD(tok), feature.CodeGenerations, codes.PermissionDenied, "Unauthorized to access code generations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), tt.md), 5*time.Second)
			defer cancel()
			resp, err := client.Complete(ctx, &gatewayv1.CompleteRequest{Feature: string(tt.feature)})
			st := status.Convert(err)
			if st.Code() != tt.wantCode || (tt.wantMsg != "" && st.Message() != tt.wantMsg) {
				t.Fatalf("Complete = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if err == nil && resp.GetText() != goodClaims()["jti"] {
				t.Fatalf("handler saw identity %q", resp.GetText())
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	loadKeys(b)
	tok := mint(b, kRSA, goodClaims())
	md := goodMD(tok)
	ctx := context.Background()
	b.Run("cache_hit", func(b *testing.B) {
		v, _ := newTestVerifier(b, newFakeKeys(kRSA, kRSA2), nil)
		if _, err := v.Verify(ctx, md); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, md); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss_RS256", func(b *testing.B) {
		v, _ := newTestVerifier(b, newFakeKeys(kRSA, kRSA2), nil, func(c *Config) { c.CacheSize = -1 })
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, md); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bare_jws_verify_RS256", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.RS256, kRSA.pub)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
