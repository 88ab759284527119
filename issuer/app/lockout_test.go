package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/pat"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// Invalid PATs over gRPC and over REST count against one lockout of the
// caller's address, and the issuer logs the lockout without the PATs.
func TestInvalidPATsLockOutTheAddressOnBothFronts(t *testing.T) {
	dir := t.TempDir()
	logs := &testenv.SafeBuffer{}
	t.Setenv(EnvKEK, "")
	cfg, err := ParseConfig([]string{"--dev", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--shutdown-grace", "1s", "--auth-failure-rate-per-address", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg, logs)
	defer r.stop(t)
	demo := readSecret(t, dir, "demo")
	tokens := issuerv1.NewTokenServiceClient(dial(t, r.addrs.GRPC))
	mint := func(p string) error {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+p)
		_, err := tokens.MintToken(ctx, &issuerv1.MintTokenRequest{})
		return err
	}
	rest := func(p string) int {
		req, _ := http.NewRequest("GET", "http://"+r.addrs.HTTP+"/api/v4/personal_access_tokens/self", nil)
		req.Header.Set("PRIVATE-TOKEN", p)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bad := pat.Prefix + strings.Repeat("A", 43)
	for range 2 {
		if code := status.Code(mint(bad)); code != codes.Unauthenticated {
			t.Fatalf("invalid PAT over gRPC: %v", code)
		}
		if code := rest(bad); code != http.StatusUnauthorized {
			t.Fatalf("invalid PAT over REST: %d", code)
		}
	}
	if code := status.Code(mint(demo)); code != codes.ResourceExhausted {
		t.Fatalf("valid PAT over gRPC after 4 invalid ones: %v, want ResourceExhausted", code)
	}
	if code := rest(demo); code != http.StatusTooManyRequests {
		t.Fatalf("valid PAT over REST after 4 invalid ones: %d, want 429", code)
	}
	if got := logs.String(); strings.Count(got, "address locked out") != 1 || strings.Contains(got, bad) || strings.Contains(got, demo) {
		t.Fatalf("log: want one lockout warning and no PAT:\n%s", got)
	}
	resp, err := http.Get("http://" + r.addrs.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	if err != nil || !strings.Contains(string(metrics), "\nairlock_issuer_auth_lockouts_total 1\n") {
		t.Fatalf("metrics (%v): want airlock_issuer_auth_lockouts_total 1", err)
	}
}
