package app

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/kek"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(Config) bool
	}{
		{name: "defaults", args: []string{"--plaintext"}, check: func(c Config) bool {
			return c.GRPCAddr == "127.0.0.1:9440" && c.HTTPAddr == "127.0.0.1:9441" && c.DataDir == "./data/issuer" &&
				c.IssuerURL == "http://127.0.0.1:9441" && c.KeyAlg == "RS256" && c.RotationPeriod == 24*time.Hour &&
				c.TokenTTL == time.Hour && c.MaxTokenTTL == time.Hour && c.ShutdownGrace == 10*time.Second && c.LogLevel == "info"
		}},
		{name: "TLS required unless asked for plaintext", wantErr: "TLS is required: set --tls-cert and --tls-key, or --plaintext for local development"},
		{name: "dev implies plaintext", args: []string{"--dev"}, check: func(c Config) bool { return c.Dev && !c.Plaintext }},
		{name: "plaintext and a certificate conflict", args: []string{"--plaintext", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, wantErr: "--plaintext and --tls-cert are mutually exclusive"},
		{name: "env fills what flags leave", args: []string{"--plaintext", "--key-alg", "ES256"}, env: map[string]string{"AIRLOCK_ISSUER_KEY_ALG": "EdDSA", "AIRLOCK_ISSUER_GRPC_ADDR": ":1"},
			check: func(c Config) bool { return c.KeyAlg == "ES256" && c.GRPCAddr == ":1" }},
		{name: "unknown algorithm", args: []string{"--key-alg", "HS256"}, wantErr: `--key-alg "HS256"`},
		{name: "rotation shorter than max ttl", args: []string{"--rotation-period", "30m"}, wantErr: "--rotation-period 30m0s is shorter than --max-token-ttl"},
		{name: "default ttl over max", args: []string{"--token-ttl", "2h"}, wantErr: "--token-ttl 2h0m0s exceeds --max-token-ttl"},
		{name: "relative issuer url", args: []string{"--issuer-url", "gitlab.local"}, wantErr: "--issuer-url"},
		{name: "cert without key", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-cert and --tls-key"},
		{name: "client ca without cert", args: []string{"--tls-client-ca", "ca.pem"}, wantErr: "--tls-client-ca: needs"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "postgres from env", args: []string{"--plaintext"}, env: map[string]string{"AIRLOCK_ISSUER_POSTGRES_URL": "host=db dbname=airlock sslmode=verify-full"},
			check: func(c Config) bool { return c.PostgresURL == "host=db dbname=airlock sslmode=verify-full" }},
		{name: "unparsable postgres url, password masked", args: []string{"--plaintext", "--postgres-url", "postgres://u:pw-s3cret@db:port/x"},
			wantErr: "--postgres-url: cannot parse `postgres://u:xxxxx@db:port/x`"},
		{name: "unknown sslmode", args: []string{"--plaintext", "--postgres-url", "postgres://db/x?sslmode=maybe"}, wantErr: "--postgres-url: "},
		{name: "gateway API off by default", args: []string{"--plaintext"}, check: func(c Config) bool {
			return c.GatewayAPIURL == "" && c.GatewayAPICA == "" && c.GatewayAPITimeout == time.Minute
		}},
		{name: "gateway API on loopback in plaintext", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--gateway-api-url", "http://127.0.0.1:9452"},
			check: func(c Config) bool { return c.GatewayAPIURL == "http://127.0.0.1:9452" }},
		{name: "gateway API elsewhere needs https", args: []string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--gateway-api-url", "http://gateway.example:9452"},
			wantErr: `--gateway-api-url "http://gateway.example:9452": plaintext http to a non-loopback gateway`},
		{name: "gateway API elsewhere in plaintext dev", args: []string{"--plaintext", "--gateway-api-url", "http://gateway:9452"},
			check: func(c Config) bool { return c.GatewayAPIURL == "http://gateway:9452" }},
		{name: "gateway API URL must be http(s)", args: []string{"--plaintext", "--gateway-api-url", "gateway:9452"}, wantErr: "--gateway-api-url"},
		{name: "gateway API CA needs https", args: []string{"--plaintext", "--gateway-api-url", "http://127.0.0.1:9452", "--gateway-api-ca", "ca.pem"},
			wantErr: "--gateway-api-ca: needs an https --gateway-api-url"},
		{name: "gateway API CA needs a URL", args: []string{"--plaintext", "--gateway-api-ca", "ca.pem"}, wantErr: "--gateway-api-ca: needs --gateway-api-url"},
		{name: "gateway API timeout positive", args: []string{"--plaintext", "--gateway-api-timeout", "0s"}, wantErr: "--gateway-api-timeout: must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := ParseConfig(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(c) {
				t.Fatalf("config %+v, err %v", c, err)
			}
		})
	}
}

func TestMissingKEKIsAStartupError(t *testing.T) {
	t.Setenv(EnvKEK, "")
	cfg, err := ParseConfig([]string{"--plaintext", "--data-dir", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), cfg, NewLogger(io.Discard, "info"), nil)
	if err == nil || !strings.Contains(err.Error(), "AIRLOCK_ISSUER_KEK") {
		t.Fatalf("Run = %v, want the missing-KEK error", err)
	}
}

type running struct {
	addrs  Addrs
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg Config, logs io.Writer) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan Addrs, 1)
	go func() { r.done <- Run(ctx, cfg, NewLogger(logs, "debug"), func(a Addrs) { ready <- a }) }()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("issuer did not start")
	}
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func readSecret(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, "credentials", name+".token")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestRunBootstrapMintRestart(t *testing.T) {
	dir := t.TempDir()
	logs := &testenv.SafeBuffer{}
	t.Setenv(EnvKEK, "")
	cfg, err := ParseConfig([]string{"--dev", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--shutdown-grace", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg, logs)

	// Dev defaults: KEK and credentials generated, owner-only.
	for path, mode := range map[string]os.FileMode{filepath.Join(dir, "kek"): 0o600, filepath.Join(dir, "credentials"): 0o700} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v mode %v, want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	demo, admin, gw := readSecret(t, dir, "demo"), readSecret(t, dir, "admin"), readSecret(t, dir, "gateway")

	cc := dial(t, r.addrs.GRPC)
	hr, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v %v", hr, err)
	}
	// On the embedded store readiness is the overall health.
	hr, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: ReadinessService})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("readiness = %v %v", hr, err)
	}
	if code := Main([]string{"healthcheck", "--addr", r.addrs.GRPC}, io.Discard); code != 0 {
		t.Fatalf("healthcheck subcommand = %d", code)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+demo)
	minted, err := issuerv1.NewTokenServiceClient(cc).MintToken(ctx, &issuerv1.MintTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(minted.GetScopes()) != 3 {
		t.Fatalf("demo user scopes = %v, want every feature", minted.GetScopes())
	}
	// A gateway-role and admin-role call with the bootstrap tokens work.
	gctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+gw)
	if _, err := issuerv1.NewModelServiceClient(cc).ListModels(gctx, &issuerv1.ListModelsRequest{}); err != nil {
		t.Fatal(err)
	}
	actx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+admin)
	if _, err := issuerv1.NewModelServiceClient(cc).CreateModel(actx, &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
		Name: "stub", Family: "general", Provider: "openai_compatible", Endpoint: "http://127.0.0.1:9460/v1",
		Identifier: "stub", TrustedNetworks: []string{"127.0.0.0/8"}, ApiKey: "sk-stub-secret-value-123456",
	}}); err != nil {
		t.Fatal(err)
	}
	verifyHTTP(t, r.addrs.HTTP, minted.GetToken())
	r.stop(t)

	// Restart on the same data directory: same instance, same keys, same
	// users; the token minted before still verifies.
	r = start(t, cfg, logs)
	defer r.stop(t)
	if readSecret(t, dir, "demo") != demo {
		t.Fatal("bootstrap ran again on restart")
	}
	verifyHTTP(t, r.addrs.HTTP, minted.GetToken())
	cc2 := dial(t, r.addrs.GRPC)
	ks, err := issuerv1.NewKeyServiceClient(cc2).GetKeys(context.Background(), &issuerv1.GetKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(ks.GetKeySet().GetJwks())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(minted.GetToken()), jwt.WithKeySet(set), jwt.WithAudience(token.Audience)); err != nil {
		t.Fatalf("token minted before restart fails with the gRPC key set: %v", err)
	}
	m, err := issuerv1.NewModelServiceClient(cc2).GetModel(gctx, &issuerv1.GetModelRequest{Name: "stub"})
	if err != nil || !m.GetModel().GetHasApiKey() {
		t.Fatalf("model after restart: %v %v", m, err)
	}

	// No secret appears in any log line of the whole run.
	kekText, _ := os.ReadFile(filepath.Join(dir, "kek"))
	for name, secret := range map[string]string{"demo PAT": demo, "admin PAT": admin, "gateway PAT": gw,
		"token": minted.GetToken(), "token signature": minted.GetToken()[strings.LastIndex(minted.GetToken(), ".")+1:],
		"API key": "sk-stub-secret-value-123456", "KEK": strings.TrimSpace(string(kekText))} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("%s appears in the log", name)
		}
	}
	if !strings.Contains(logs.String(), `"issuer serving"`) {
		t.Fatal("log capture is empty: the secret check proves nothing")
	}
}

func verifyHTTP(t *testing.T, addr, tok string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/oauth/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithAudience(token.Audience), jwt.WithIssuer("http://127.0.0.1:9441")); err != nil {
		t.Fatalf("HTTP JWKS does not verify the token: %v", err)
	}
	if h, err := http.Get("http://" + addr + "/healthz"); err != nil || h.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	} else {
		h.Body.Close()
	}
}

func TestKEKFromEnv(t *testing.T) {
	t.Setenv(EnvKEK, base64.StdEncoding.EncodeToString(make([]byte, kek.Size)))
	dir := t.TempDir()
	cfg, err := ParseConfig([]string{"--plaintext", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--key-alg", "ES256"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg, io.Discard)
	r.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "kek")); !os.IsNotExist(err) {
		t.Fatal("a KEK file was generated although one was given")
	}
	if _, err := os.Stat(filepath.Join(dir, "credentials")); !os.IsNotExist(err) {
		t.Fatal("users bootstrapped without --bootstrap or --dev")
	}
}
