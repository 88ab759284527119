package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

var stubAnswer = stubmodel.New(stubmodel.Config{}).Text(12)

func TestFlowEndToEnd(t *testing.T) {
	c := newCluster(t)
	tok := c.mint(nil, 0)
	if len(tok.Scopes) != 3 {
		t.Fatalf("demo user's token scopes = %v, want all three features", tok.Scopes)
	}
	text, err := c.stream(withToken(tok), "duo_chat")
	if err != nil {
		t.Fatalf("StreamCompletion: %v", err)
	}
	if text != stubAnswer {
		t.Fatalf("streamed text = %q, want %q", text, stubAnswer)
	}
	gw := gatewayv1.NewCompletionServiceClient(dial(t, c.GatewayGRPC))
	resp, err := gw.Complete(withToken(tok), &gatewayv1.CompleteRequest{Feature: "code_completions",
		CodeContext: &gatewayv1.CodeContext{FileName: "main.go", ContentAboveCursor: "func main() {\n", ContentBelowCursor: "}\n", Language: "go"}})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.GetText() != stubAnswer || resp.GetDone().GetModel() != "stub" || resp.GetDone().GetFinishReason() != gatewayv1.FinishReason_FINISH_REASON_STOP {
		t.Fatalf("Complete = %v", resp)
	}
}

// forged signs claims like the issuer's with a key the issuer never published.
func forged(t *testing.T, c *testCluster, md map[string]string, mutate func(jwt.Token)) string {
	t.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := jwk.FromRaw(raw)
	_ = jwk.AssignKeyID(key)
	now := time.Now()
	tok, _ := jwt.NewBuilder().JwtID(uuid.NewString()).Issuer(c.IssuerURL()).Subject(md["x-gitlab-instance-id"]).
		Audience([]string{"gitlab-ai-gateway"}).IssuedAt(now).NotBefore(now.Add(-5*time.Second)).Expiration(now.Add(time.Hour)).
		Claim("gitlab_realm", "self-managed").Claim("scopes", []string{"duo_chat"}).Build()
	if mutate != nil {
		mutate(tok)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256, key))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

func TestRejections(t *testing.T) {
	c := newCluster(t, "--leeway", "0s")
	good := cluster.Metadata(c.mint(nil, 0))
	codeOnly := cluster.Metadata(c.mint([]string{"code_completions"}, 0))
	short := cluster.Metadata(c.mint(nil, time.Second))
	with := func(base map[string]string, k, v string) map[string]string {
		out := map[string]string{}
		for kk, vv := range base {
			out[kk] = vv
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	time.Sleep(1500 * time.Millisecond) // let the 1 s token expire (leeway 0)

	tests := []struct {
		name     string
		md       map[string]string
		feature  string
		wantCode codes.Code
		wantMsg  string
	}{
		{"missing token", with(good, "authorization", ""), "duo_chat", codes.Unauthenticated, "No authorization header presented"},
		{"not bearer", with(good, "authorization", "Basic abc"), "duo_chat", codes.Unauthenticated, "Invalid authorization header"},
		{"wrong auth type", with(good, "x-gitlab-authentication-type", "pat"), "duo_chat", codes.Unauthenticated, "Invalid authentication token type - only OIDC is supported"},
		{"expired", short, "duo_chat", codes.Unauthenticated, "Forbidden by auth provider"},
		{"wrongly signed", with(good, "authorization", "Bearer "+forged(t, c, good, nil)), "duo_chat", codes.Unauthenticated, "Forbidden by auth provider"},
		{"other instance id", with(good, "x-gitlab-instance-id", uuid.NewString()), "duo_chat", codes.Unauthenticated, "Header mismatch 'X-Gitlab-Instance-Id'"},
		{"no scope for the feature", codeOnly, "duo_chat", codes.PermissionDenied, "Unauthorized to access duo chat"},
		{"scope present", codeOnly, "code_completions", codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.stream(withMetadata(tt.md), tt.feature)
			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Fatalf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestWrongAudienceIsRefused(t *testing.T) {
	// A gateway that expects another audience sees every issuer token as
	// minted for someone else.
	c := newCluster(t, "--audience", "some-other-service")
	_, err := c.stream(withToken(c.mint(nil, 0)), "duo_chat")
	if st, _ := status.FromError(err); st.Code() != codes.Unauthenticated || st.Message() != "Forbidden by auth provider" {
		t.Fatalf("status = %v, want Unauthenticated Forbidden by auth provider", err)
	}
}

// TestGatewayOnHTTPJWKS runs the gateway on the issuer's HTTP JWKS, as it
// would verify a real GitLab instance's tokens (/oauth/discovery/keys),
// instead of the gRPC key watch.
func TestGatewayOnHTTPJWKS(t *testing.T) {
	c := newCluster(t)
	// A JWKS endpoint that relays the issuer's and counts fetches, to prove
	// the keys came over HTTP.
	var fetches atomic.Int32
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		resp, err := http.Get(c.JWKSURL())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", resp.Header.Get("Cache-Control"))
		_, _ = io.Copy(w, resp.Body)
	}))
	defer jwks.Close()
	c.restartGateway("--jwks-url", jwks.URL+"/oauth/discovery/keys")
	text, err := c.stream(withToken(c.mint(nil, 0)), "duo_chat")
	if err != nil || text != stubAnswer {
		t.Fatalf("stream with keys from the HTTP JWKS: %q, %v", text, err)
	}
	if fetches.Load() == 0 {
		t.Fatal("the gateway never fetched the HTTP JWKS")
	}
}
