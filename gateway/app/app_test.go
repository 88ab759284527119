package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// tokenFile writes a gateway PAT the way the issuer's bootstrap does.
func tokenFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.token")
	if err := os.WriteFile(p, []byte("glpat-gateway-test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// devArgs are a valid plaintext configuration on free loopback ports.
func devArgs(t *testing.T, issuerAddr string, extra ...string) []string {
	return append([]string{"--plaintext", "--issuer-addr", issuerAddr, "--issuer-token-file", tokenFile(t),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--api-http-addr", "127.0.0.1:0", "--shutdown-grace", "2s"}, extra...)
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(Config) bool
	}{
		{name: "defaults", args: []string{"--plaintext", "--issuer-token-file", "t"}, check: func(c Config) bool {
			return c.GRPCAddr == "127.0.0.1:9450" && c.HTTPAddr == "127.0.0.1:9451" && c.IssuerAddr == "127.0.0.1:9440" &&
				c.ShutdownGrace == 15*time.Second && c.MaxStaleness == 24*time.Hour && c.LogLevel == "info"
		}},
		{name: "env fills what flags leave", args: []string{"--plaintext", "--issuer-token-file", "t", "--grpc-addr", "127.0.0.1:1"},
			env:   map[string]string{"AIRLOCK_GATEWAY_GRPC_ADDR": "127.0.0.1:2", "AIRLOCK_GATEWAY_AUDIENCE": "other"},
			check: func(c Config) bool { return c.GRPCAddr == "127.0.0.1:1" && c.Audience == "other" }},
		{name: "a JWKS URL does not replace the issuer, which still serves models and revocations",
			args:    []string{"--plaintext", "--issuer-token-file", "t", "--issuer-addr", "", "--jwks-url", "https://gitlab.example/oauth/discovery/keys"},
			wantErr: "--issuer-addr is required: the gateway reads the model configuration and revocations from the issuer (--jwks-url replaces only the source of verification keys; only with --allow-request-models may the gateway run without an issuer)"},
		{name: "a JWKS URL with request-supplied models runs without an issuer (and needs no issuer credentials)",
			args: []string{"--plaintext", "--issuer-addr", "", "--jwks-url", "https://gitlab.example/oauth/discovery/keys",
				"--allow-request-models", "--request-model-networks", "10.0.0.0/8, 192.168.0.0/16"},
			check: func(c Config) bool {
				return c.NoIssuer() && c.AllowRequestModels && len(c.RequestModelNetworks) == 2 && c.RequestModelNetworks[1] == "192.168.0.0/16"
			}},
		{name: "request models from the environment", args: []string{"--plaintext", "--issuer-token-file", "t"},
			env: map[string]string{"AIRLOCK_GATEWAY_ALLOW_REQUEST_MODELS": "true", "AIRLOCK_GATEWAY_REQUEST_MODEL_NETWORKS": "10.0.0.0/8,fd00::/8"},
			check: func(c Config) bool {
				return c.AllowRequestModels && len(c.RequestModelNetworks) == 2 && c.RequestModelNetworks[1] == "fd00::/8" && !c.NoIssuer()
			}},
		{name: "request-supplied models need an allowlist", args: []string{"--plaintext", "--issuer-token-file", "t", "--allow-request-models"},
			wantErr: "--allow-request-models needs --request-model-networks"},
		{name: "the allowlist holds CIDRs", args: []string{"--plaintext", "--issuer-token-file", "t", "--allow-request-models", "--request-model-networks", "10.0.0.1"},
			wantErr: `--request-model-networks "10.0.0.1": not a CIDR`},
		{name: "an allowlist without the opt-in is a mistake", args: []string{"--plaintext", "--issuer-token-file", "t", "--request-model-networks", "10.0.0.0/8"},
			wantErr: "--request-model-networks has no effect without --allow-request-models"},
		{name: "a JWKS URL beside the issuer is fine",
			args:  []string{"--plaintext", "--issuer-token-file", "t", "--jwks-url", "https://gitlab.example/oauth/discovery/keys"},
			check: func(c Config) bool { return c.JWKSURL != "" && c.IssuerAddr != "" }},
		{name: "the gateway must authenticate to the issuer", args: []string{"--plaintext"},
			wantErr: "--issuer-token-file or --issuer-cert (mutual TLS) is required"},
		{name: "TLS required unless asked for plaintext", args: []string{"--issuer-token-file", "t"},
			wantErr: "TLS is required: set --tls-cert and --tls-key, or --plaintext for local development"},
		{name: "client certificate without its key", args: []string{"--plaintext", "--issuer-cert", "c.pem"},
			wantErr: "--issuer-cert and --issuer-key go together"},
		{name: "leeway bounded", args: []string{"--plaintext", "--issuer-token-file", "t", "--leeway", "10m"}, wantErr: "--leeway 10m0s: want 0..5m"},
		{name: "bad log level", args: []string{"--plaintext", "--issuer-token-file", "t", "--log-level", "loud"}, wantErr: `--log-level "loud"`},
		{name: "stray argument", args: []string{"--plaintext", "--issuer-token-file", "t", "serve"}, wantErr: `unexpected argument "serve"`},
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

func TestMainExitCodes(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"help":          {[]string{"--help"}, 0},
		"bad usage":     {[]string{"--leeway", "1h"}, 2},
		"unknown flag":  {[]string{"--no-such-flag"}, 2},
		"runtime error": {[]string{"--plaintext", "--issuer-token-file", filepath.Join(t.TempDir(), "missing")}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if got := Main(tc.args, io.Discard); got != tc.want {
				t.Fatalf("Main(%v) = %d, want %d", tc.args, got, tc.want)
			}
		})
	}
}

// TestBuildWithoutListeners: build wires everything without binding a
// port or dialling the issuer, so its result can be inspected.
func TestBuildWithoutListeners(t *testing.T) {
	cfg, err := ParseConfig(devArgs(t, "127.0.0.1:1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	g, err := build(cfg, NewLogger(io.Discard, "info"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.close(); err != nil {
			t.Fatal(err)
		}
	}()
	if _, ok := g.grpc.GetServiceInfo()["airlock.gateway.v1.CompletionService"]; !ok {
		t.Fatalf("completion service not registered: %v", g.grpc.GetServiceInfo())
	}
	resp, err := g.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before any key set = %v, %v; want NOT_SERVING", resp, err)
	}
	for path, want := range map[string]int{"/healthz": http.StatusServiceUnavailable, "/metrics": http.StatusOK, "/debug/pprof/": http.StatusNotFound} {
		rec := httptest.NewRecorder()
		g.http.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
		}
	}
	if got := len(g.tasks(listeners{})); got != 6 {
		t.Errorf("%d tasks without HTTP and health listeners, want 6 (grpc, three watches, health, drain)", got)
	}
}

func TestBuildErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.token")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mutate  func(*Config)
		wantErr string
	}{
		"invalid configuration": {func(c *Config) { c.IssuerAddr = "" }, "--issuer-addr is required"},
		"missing token file":    {func(c *Config) { c.IssuerTokenFile += ".missing" }, "--issuer-token-file"},
		"empty token file":      {func(c *Config) { c.IssuerTokenFile = empty }, "is empty"},
		"missing issuer CA":     {func(c *Config) { c.IssuerCA = "/nonexistent/ca.pem" }, "ca.pem"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := ParseConfig(devArgs(t, "127.0.0.1:1"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tc.mutate(&cfg)
			if _, err := build(cfg, NewLogger(io.Discard, "info")); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("build = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// fakeIssuer serves the three watches the gateway follows: one key set,
// no revocations, an empty model configuration. It counts opened watches.
type fakeIssuer struct {
	issuerv1.UnimplementedKeyServiceServer
	issuerv1.UnimplementedTokenServiceServer
	issuerv1.UnimplementedModelServiceServer
	keySet                 *issuerv1.KeySet
	keys, revokes, configs atomic.Int32
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, "k1")
	_ = pub.Set(jwk.AlgorithmKey, "ES256")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeIssuer{keySet: &issuerv1.KeySet{Revision: 1, Jwks: b}}
}

func (f *fakeIssuer) GetKeys(context.Context, *issuerv1.GetKeysRequest) (*issuerv1.GetKeysResponse, error) {
	return &issuerv1.GetKeysResponse{KeySet: f.keySet}, nil
}

func (f *fakeIssuer) WatchKeys(_ *issuerv1.WatchKeysRequest, s grpc.ServerStreamingServer[issuerv1.WatchKeysResponse]) error {
	f.keys.Add(1)
	if err := s.Send(&issuerv1.WatchKeysResponse{KeySet: f.keySet}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeIssuer) WatchRevocations(_ *issuerv1.WatchRevocationsRequest, s grpc.ServerStreamingServer[issuerv1.WatchRevocationsResponse]) error {
	f.revokes.Add(1)
	if err := s.Send(&issuerv1.WatchRevocationsResponse{}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeIssuer) WatchModels(_ *issuerv1.WatchModelsRequest, s grpc.ServerStreamingServer[issuerv1.WatchModelsResponse]) error {
	f.configs.Add(1)
	if err := s.Send(&issuerv1.WatchModelsResponse{Revision: 1}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// opened returns how many watches of each kind were opened.
func (f *fakeIssuer) opened() [3]int32 {
	return [3]int32{f.keys.Load(), f.revokes.Load(), f.configs.Load()}
}

// serveFake serves f on addr ("127.0.0.1:0" for any port) until stop.
func serveFake(t *testing.T, f *fakeIssuer, addr string) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	issuerv1.RegisterKeyServiceServer(srv, f)
	issuerv1.RegisterTokenServiceServer(srv, f)
	issuerv1.RegisterModelServiceServer(srv, f)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(lis) }()
	var once sync.Once
	stop := func() { once.Do(func() { srv.Stop(); wg.Wait() }) }
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

type running struct {
	addrs  Addrs
	cancel context.CancelFunc
	done   chan error
}

func startGateway(t *testing.T, args []string) *running {
	t.Helper()
	cfg, err := ParseConfig(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan Addrs, 1)
	go func() { r.done <- Run(ctx, cfg, NewLogger(io.Discard, "debug"), func(a Addrs) { ready <- a }) }()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("gateway did not start")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and reports how long it took to return.
func (r *running) stop(t *testing.T) time.Duration {
	t.Helper()
	begin := time.Now()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	return time.Since(begin)
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(begin)
}

func healthStatus(t *testing.T, addr string) healthpb.HealthCheckResponse_ServingStatus {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// TestServeStopsCleanly: the gateway serves once the issuer has delivered
// keys and models, and a cancel stops every task it started (goleak checks
// nothing outlives it) promptly, watches of the issuer included.
func TestServeStopsCleanly(t *testing.T) {
	fake := newFakeIssuer(t)
	issuerAddr, _ := serveFake(t, fake, "127.0.0.1:0")
	r := startGateway(t, devArgs(t, issuerAddr))
	waitFor(t, "SERVING once keys and models arrived", 10*time.Second, func() bool {
		return healthStatus(t, r.addrs.GRPC) == healthpb.HealthCheckResponse_SERVING
	})
	resp, err := http.Get("http://" + r.addrs.HTTP + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %v, %v", resp, err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if got := fake.opened(); got != [3]int32{1, 1, 1} {
		t.Fatalf("watches opened (keys, revocations, models) = %v, want one each", got)
	}
	took := r.stop(t)
	t.Logf("gateway stop took %v", took)
	if took > time.Second {
		t.Fatalf("stop took %v, want well under a second with no call in flight", took)
	}
}

func TestServeFailsOnABusyPortAndReleasesTheRest(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg, err := ParseConfig(devArgs(t, "127.0.0.1:1", "--http-addr", busy.Addr().String()), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), cfg, NewLogger(io.Discard, "info"), func(Addrs) { t.Error("ready called although a port was busy") })
	if err == nil || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("Run = %v, want the --http-addr error", err)
	}
}

// TestWatchesReturnPromptlyAfterAnIssuerRestart: after the issuer was down
// long enough for gRPC's default reconnect backoff to grow to many seconds,
// all three watches are back within about a second of it listening again.
func TestWatchesReturnPromptlyAfterAnIssuerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for an outage")
	}
	fake := newFakeIssuer(t)
	issuerAddr, stopIssuer := serveFake(t, fake, "127.0.0.1:0")
	r := startGateway(t, devArgs(t, issuerAddr))
	waitFor(t, "first watches", 10*time.Second, func() bool { return fake.opened() == [3]int32{1, 1, 1} })
	_ = r

	stopIssuer()
	time.Sleep(4 * time.Second) // gRPC's default backoff would be past 4 s by now
	serveFake(t, fake, issuerAddr)
	took := waitFor(t, "watches back after the restart", 10*time.Second, func() bool {
		got := fake.opened()
		return got[0] >= 2 && got[1] >= 2 && got[2] >= 2
	})
	t.Logf("all three watches back %v after the issuer listened again", took)
	if took > 1500*time.Millisecond {
		t.Fatalf("watches back after %v, want about a second", took)
	}
}

// One address holds at most --max-connections-per-address connections on
// the gRPC and the HTTP API ports; more are closed at accept and counted.
func TestConnectionsPerAddressAreCapped(t *testing.T) {
	r := startGateway(t, devArgs(t, "127.0.0.1:1", "--max-connections-per-address", "2"))
	for _, addr := range []string{r.addrs.GRPC, r.addrs.API} {
		var held []net.Conn
		for range 2 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		extra, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: a third connection from one address stayed open (read %d, %v)", addr, n, err)
		}
		_ = extra.Close()
		for _, c := range held {
			_ = c.Close()
		}
	}
	waitFor(t, "refusals counted", 5*time.Second, func() bool {
		resp, err := http.Get("http://" + r.addrs.HTTP + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "airlock_gateway_connections_refused_total 2")
	})
}
