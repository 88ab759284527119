package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
)

// Config describes one cluster. Every address is chosen on 127.0.0.1.
type Config struct {
	// BinDir holds the issuer, gateway and stubmodel binaries.
	BinDir string
	// WorkDir receives the issuer's data directory and the processes' logs.
	WorkDir string
	// IssuerArgs are appended to the issuer's command line (e.g.
	// --key-alg ES256).
	IssuerArgs []string
	// NoGateway starts only the issuer (the stub too unless NoStub).
	NoGateway, NoStub bool
	// StubTokens and StubDelay shape the stub model's answers.
	StubTokens int
	StubDelay  time.Duration
	// GatewayArgs are appended to the gateway's command line (limits).
	GatewayArgs []string
	// GatewayCommand replaces the gateway binary as argv prefix (the suite
	// uses it to run the gateway inside a wrapper that serves pprof);
	// empty means BinDir/gateway.
	GatewayCommand []string
	// IssuerFront, when set, is called with the issuer's gRPC address and
	// returns the address the gateway should use instead (a counting
	// proxy).
	IssuerFront func(issuerGRPC string) (string, error)
	// StartTimeout bounds waiting for each process to become healthy
	// (default 60 s).
	StartTimeout time.Duration
}

// Cluster is a running issuer, gateway and stub model.
type Cluster struct {
	cfg                    Config
	DataDir                string
	IssuerGRPC, IssuerHTTP string
	GatewayGRPC            string
	GatewayHTTP            string
	GatewayAPI             string // the HTTP API (--api-http-addr)
	StubAddr               string
	Issuer, Gateway, Stub  *Proc
}

// IssuerURL is the iss claim of the cluster's tokens.
func (c *Cluster) IssuerURL() string { return "http://" + c.IssuerHTTP }

// Start starts the processes and waits until each is healthy. On error it
// stops whatever it started.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StubTokens <= 0 {
		cfg.StubTokens = 16
	}
	c := &Cluster{cfg: cfg, DataDir: filepath.Join(cfg.WorkDir, "issuer")}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, a := range []*string{&c.IssuerGRPC, &c.IssuerHTTP, &c.GatewayGRPC, &c.GatewayHTTP, &c.GatewayAPI, &c.StubAddr} {
		if *a, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, err
	}
	if !cfg.NoStub {
		c.Stub, err = StartProc("stubmodel", []string{filepath.Join(cfg.BinDir, "stubmodel"), "--addr", c.StubAddr,
			"--tokens", fmt.Sprint(cfg.StubTokens), "--delay", cfg.StubDelay.String()}, filepath.Join(cfg.WorkDir, "stubmodel.log"))
		if err != nil {
			return nil, err
		}
		if err := waitHTTP(ctx, c.Stub, "http://"+c.StubAddr+"/healthz", cfg.StartTimeout); err != nil {
			return nil, err
		}
	}
	c.Issuer, err = StartProc("issuer", append([]string{filepath.Join(cfg.BinDir, "issuer"), "--dev", "--data-dir", c.DataDir,
		"--grpc-addr", c.IssuerGRPC, "--http-addr", c.IssuerHTTP, "--issuer-url", c.IssuerURL(), "--log-level", "warn",
		// The suite measures cost, not the per-caller limits: one bench user
		// mints thousands of tokens and opens 1,000 watches.
		"--mint-rate-per-user", "0", "--max-watches-per-caller", "0"}, cfg.IssuerArgs...),
		filepath.Join(cfg.WorkDir, "issuer.log"))
	if err != nil {
		return nil, err
	}
	if err := waitGRPC(ctx, c.Issuer, c.IssuerGRPC, cfg.StartTimeout); err != nil {
		return nil, err
	}
	if cfg.NoGateway {
		return c, nil
	}
	if !cfg.NoStub {
		if err := c.configureStub(ctx); err != nil {
			return nil, err
		}
	}
	issuerAddr := c.IssuerGRPC
	if cfg.IssuerFront != nil {
		if issuerAddr, err = cfg.IssuerFront(c.IssuerGRPC); err != nil {
			return nil, err
		}
	}
	argv := cfg.GatewayCommand
	if len(argv) == 0 {
		argv = []string{filepath.Join(cfg.BinDir, "gateway")}
	}
	argv = append(append([]string{}, argv...), "--plaintext", "--grpc-addr", c.GatewayGRPC, "--http-addr", c.GatewayHTTP, "--api-http-addr", c.GatewayAPI,
		"--issuer-addr", issuerAddr, "--issuer-token-file", c.credentialFile("gateway"),
		"--expected-issuer", c.IssuerURL(), "--log-level", "warn")
	c.Gateway, err = StartProc("gateway", append(argv, cfg.GatewayArgs...), filepath.Join(cfg.WorkDir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	if err := waitGRPC(ctx, c.Gateway, c.GatewayGRPC, cfg.StartTimeout); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops the processes, gateway first.
func (c *Cluster) Close() {
	for _, p := range []*Proc{c.Gateway, c.Issuer, c.Stub} {
		if p != nil {
			p.Stop(10 * time.Second)
		}
	}
}

func (c *Cluster) credentialFile(user string) string {
	return filepath.Join(c.DataDir, "credentials", user+".token")
}

// PAT returns the personal access token the issuer bootstrapped for user
// (admin, demo or gateway). Callers must not log it.
func (c *Cluster) PAT(user string) (string, error) {
	b, err := os.ReadFile(c.credentialFile(user))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// AsUser returns ctx carrying user's personal access token for the issuer.
func (c *Cluster) AsUser(ctx context.Context, user string) (context.Context, error) {
	pat, err := c.PAT(user)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+pat), nil
}

// Dial opens a plaintext client connection to a loopback address.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
}

// StubModel is the name the stub is registered under at the issuer.
const StubModel = "stub"

// Features are the features the cluster binds to the stub model.
var Features = []string{"code_completions", "code_generations", "duo_chat"}

// configureStub registers the stub model and binds every feature to it, as
// an administrator would.
func (c *Cluster) configureStub(ctx context.Context) error {
	cc, err := Dial(c.IssuerGRPC)
	if err != nil {
		return err
	}
	defer cc.Close()
	actx, err := c.AsUser(ctx, "admin")
	if err != nil {
		return err
	}
	models := issuerv1.NewModelServiceClient(cc)
	_, err = models.CreateModel(actx, &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
		Name: StubModel, Family: "general", Provider: "openai_compatible",
		Endpoint: "http://" + c.StubAddr + "/v1", Identifier: "airlock-stub",
		TrustedNetworks: []string{"127.0.0.1/32"},
	}})
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("CreateModel: %w", err)
	}
	for _, f := range Features {
		if _, err := models.SetFeatureSetting(actx, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: f, Model: StubModel}}); err != nil {
			return fmt.Errorf("SetFeatureSetting(%s): %w", f, err)
		}
	}
	return nil
}

// Mint mints a token for the demo user with every feature and returns the
// response, whose Metadata is what a client sends to the gateway.
func (c *Cluster) Mint(ctx context.Context, ttl time.Duration) (*issuerv1.MintTokenResponse, error) {
	cc, err := Dial(c.IssuerGRPC)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	uctx, err := c.AsUser(ctx, "demo")
	if err != nil {
		return nil, err
	}
	req := &issuerv1.MintTokenRequest{}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	return issuerv1.NewTokenServiceClient(cc).MintToken(uctx, req)
}

// Metrics fetches the Prometheus text page at url.
func Metrics(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var b strings.Builder
	if _, err := copyLimited(&b, resp.Body, 32<<20); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// GatewayMetrics fetches the gateway's /metrics page.
func (c *Cluster) GatewayMetrics(ctx context.Context) ([]byte, error) {
	return Metrics(ctx, "http://"+c.GatewayHTTP+"/metrics")
}

// IssuerMetrics fetches the issuer's /metrics page.
func (c *Cluster) IssuerMetrics(ctx context.Context) ([]byte, error) {
	return Metrics(ctx, "http://"+c.IssuerHTTP+"/metrics")
}

func waitGRPC(ctx context.Context, p *Proc, addr string, timeout time.Duration) error {
	return waitFor(ctx, p, timeout, func() error { return healthprobe.Check(ctx, addr, "", nil, time.Second) })
}

func waitHTTP(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	return waitFor(ctx, p, timeout, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}

func waitFor(ctx context.Context, p *Proc, timeout time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = probe(); last == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before serving: %v\n%s", p.Name, p.err, p.Output())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not healthy after %v: %v\n%s", p.Name, timeout, last, p.Output())
}
