package app

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/issuer/kek"
)

func kekEnv(t *testing.T, b byte) {
	t.Helper()
	k := make([]byte, kek.Size)
	for i := range k {
		k[i] = b
	}
	t.Setenv(EnvKEK, base64.StdEncoding.EncodeToString(k))
}

func testConfig(t *testing.T, dir string, extra ...string) Config {
	t.Helper()
	cfg, err := ParseConfig(append([]string{"--plaintext", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBuildWithoutListeners: build loads keys and wires every service
// without binding a port; health stays NOT_SERVING until serve.
func TestBuildWithoutListeners(t *testing.T) {
	kekEnv(t, 7)
	s, err := build(context.Background(), testConfig(t, t.TempDir()), NewLogger(io.Discard, "info"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
	}()
	for _, svc := range []string{"airlock.issuer.v1.KeyService", "airlock.issuer.v1.TokenService", "airlock.issuer.v1.ModelService", "airlock.issuer.v1.UserService"} {
		if _, ok := s.grpc.GetServiceInfo()[svc]; !ok {
			t.Errorf("%s not registered", svc)
		}
	}
	if ks := s.keys.KeySet(); ks == nil || len(ks.Keys) != 2 {
		t.Fatalf("key set after build = %+v, want active + prepared", ks)
	}
	resp, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before serve = %v, %v; want NOT_SERVING", resp, err)
	}
	rec := httptest.NewRecorder()
	s.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth/discovery/keys", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"keys"`) {
		t.Fatalf("JWKS = %d %s", rec.Code, rec.Body)
	}
	// The instance's REST API is mounted next to JWKS; without
	// --gateway-api-url direct connections are disabled.
	rec = httptest.NewRecorder()
	s.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v4/version", nil))
	if rec.Code != http.StatusUnauthorized || rec.Body.String() != `{"message":"401 Unauthorized"}`+"\n" {
		t.Fatalf("/api/v4/version without a PAT = %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/oauth/token/info", nil))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"invalid_token"`) {
		t.Fatalf("/oauth/token/info without a token = %d %s", rec.Code, rec.Body)
	}
	if s.gateway != nil {
		t.Fatal("a gateway client without --gateway-api-url")
	}
	if got := len(s.tasks(listeners{})); got != 5 {
		t.Errorf("%d tasks without a health listener, want 5 (grpc, http, keys, token pruning, drain)", got)
	}
}

// TestBuildFailureClosesTheStore: keys sealed under another KEK fail the
// build, and the store is closed again (bbolt would otherwise keep its
// file lock and the next open would time out).
func TestBuildFailureClosesTheStore(t *testing.T) {
	dir := t.TempDir()
	kekEnv(t, 7)
	s, err := build(context.Background(), testConfig(t, dir), NewLogger(io.Discard, "info"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	kekEnv(t, 8)
	if _, err := build(context.Background(), testConfig(t, dir), NewLogger(io.Discard, "info"), time.Now); err == nil {
		t.Fatal("keys sealed under another KEK were accepted")
	}
	kekEnv(t, 7)
	s, err = build(context.Background(), testConfig(t, dir), NewLogger(io.Discard, "info"), time.Now)
	if err != nil {
		t.Fatalf("store not released by the failed build: %v", err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

func TestBuildRefusesAnInvalidConfig(t *testing.T) {
	kekEnv(t, 7)
	cfg := testConfig(t, t.TempDir())
	cfg.RotationPeriod = time.Minute
	if _, err := build(context.Background(), cfg, NewLogger(io.Discard, "info"), time.Now); err == nil || !strings.Contains(err.Error(), "--rotation-period 1m0s is shorter than --max-token-ttl") {
		t.Fatalf("build = %v, want the --rotation-period error", err)
	}
}

func TestServeFailsOnABusyPort(t *testing.T) {
	kekEnv(t, 7)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t, t.TempDir(), "--http-addr", busy.Addr().String())
	err = Run(context.Background(), cfg, NewLogger(io.Discard, "info"), func(Addrs) { t.Error("ready called although a port was busy") })
	if err == nil || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("Run = %v, want the --http-addr error", err)
	}
}
