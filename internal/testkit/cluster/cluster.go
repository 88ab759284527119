// Package cluster starts the real Airlock binaries (issuer, gateway, stub
// model) on free loopback ports for the end-to-end tests (e2e), the load
// test (bench/loadtest) and the benchmark suite (bench/suite): it builds or
// locates the binaries, starts the processes with their logs in the work
// directory, waits until each is healthy, configures the stub model as an
// administrator would, and stops everything on Close. Options add the fault
// model (internal/testkit/faultmodel), mutual TLS with a private CA, a
// plaintext HTTP listener on the gateway, extra flags, and a front (proxy)
// between gateway and issuer; methods restart or kill -9 a process.
//
// Clients of the cluster go through pkg/client: tokens are minted over the
// user's personal access token (client.PATCredentials) into client.Token
// values, and answers are read with client.Stream.
//
// It never asserts anything: every method returns an error, so a test, the
// load test and the benchmarks decide what a failure means.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	"github.com/airlock-dev/airlock/pkg/devpki"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Config describes one cluster. Every address is chosen on 127.0.0.1.
type Config struct {
	// BinDir holds the issuer, gateway and stubmodel binaries (Build,
	// CheckBinaries). Required.
	BinDir string
	// WorkDir receives the issuer's data directory (WorkDir/issuer), the
	// processes' logs (WorkDir/<name>.log) and, under MutualTLS, the
	// private CA (WorkDir/pki). Required; created if missing.
	WorkDir string

	// StubTokens and StubDelay shape the stub model's answers (default 12
	// tokens; the delay is taken as given, zero for none).
	StubTokens int
	StubDelay  time.Duration
	// NoStub starts no stub model; NoGateway starts only the issuer (and
	// the stub unless NoStub).
	NoStub, NoGateway bool
	// SkipModelSetup leaves the issuer without models. Otherwise the stub
	// is registered as model StubModel and every feature in Features is
	// bound to it before the gateway starts.
	SkipModelSetup bool
	// FaultModel, when set, also starts the misbehaving model server in
	// this process (Cluster.Faults).
	FaultModel *faultmodel.Config

	// MutualTLS runs both services with TLS and client certificates from a
	// private CA: the gateway authenticates to the issuer with its
	// certificate instead of a personal access token, and the cluster's
	// own clients present the certificate "tool" (ClientTLS). The gateway
	// then also serves plaintext gRPC health on GatewayHealth.
	MutualTLS bool
	// GatewayHTTP gives the gateway an HTTP listener (metrics, health) on
	// GatewayHTTP; otherwise it runs with --http-addr "".
	GatewayHTTP bool

	// IssuerArgs and GatewayArgs are appended to the command lines.
	IssuerArgs, GatewayArgs []string
	// GatewayCommand replaces BinDir/gateway as the argv prefix (the bench
	// suite runs the gateway inside a wrapper that serves pprof).
	GatewayCommand []string
	// IssuerFront, when set, is called once with the issuer's gRPC address
	// and returns the address the gateway should use instead (a counting
	// proxy).
	IssuerFront func(issuerGRPC string) (string, error)
	// StartTimeout bounds waiting for each process to become healthy
	// (default 60 s).
	StartTimeout time.Duration
}

// StubModel is the name the stub is registered under at the issuer.
const StubModel = "stub"

// Features are the features bound to the stub model.
var Features = []string{"code_completions", "code_generations", "duo_chat"}

// grace is how long Stop waits after SIGTERM before it kills.
const grace = 10 * time.Second

// Cluster is a running issuer, gateway and stub model. The address fields
// stay the same across restarts; the process fields point at the current
// processes. Methods are safe for concurrent use except the ones that
// start or stop processes.
type Cluster struct {
	cfg Config
	// DataDir is the issuer's data directory.
	DataDir string
	// Addresses. GatewayHTTP is empty unless Config.GatewayHTTP,
	// GatewayHealth unless Config.MutualTLS, StubAddr under Config.NoStub.
	// GatewayAPI is the gateway's HTTP API (--api-http-addr), always on its
	// own port so that parallel clusters never share the default one.
	IssuerGRPC, IssuerHTTP   string
	GatewayGRPC, GatewayHTTP string
	GatewayAPI               string
	GatewayHealth, StubAddr  string
	// The current processes (Stub nil under Config.NoStub, Gateway under
	// Config.NoGateway).
	Issuer, Gateway, Stub *Proc
	// Faults is the fault model server under Config.FaultModel, else nil.
	Faults *faultmodel.Server

	pki         string      // CA and certificate directory under MutualTLS
	clientTLS   *tls.Config // the "tool" identity under MutualTLS
	issuerFront string      // what the gateway dials for the issuer
	http        *http.Client

	mu                      sync.Mutex
	issuerConn, gatewayConn *grpc.ClientConn
}

// Start starts the processes and waits until each is healthy. On error it
// stops whatever it started; the error carries the tail of a failed
// process's output.
//
// The ports are found free (FreeAddr) and then bound by the processes; in
// between, the kernel may hand one to another process's outgoing
// connection as its local port. A process that exits with "address already
// in use" therefore makes Start begin again on fresh ports, up to
// startAttempts times in all.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, cfg)
		if err == nil || attempt == startAttempts || !strings.Contains(err.Error(), "address already in use") {
			return c, err
		}
	}
}

const startAttempts = 3

func start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.BinDir == "" || cfg.WorkDir == "" {
		return nil, errors.New("cluster: BinDir and WorkDir are required")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StubTokens <= 0 {
		cfg.StubTokens = 12
	}
	c := &Cluster{cfg: cfg, DataDir: filepath.Join(cfg.WorkDir, "issuer"),
		http: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, err
	}
	if err := c.pickAddrs(); err != nil {
		return nil, err
	}
	if cfg.MutualTLS {
		if err := c.makePKI(); err != nil {
			return nil, err
		}
	}
	if cfg.FaultModel != nil {
		if c.Faults, err = faultmodel.Start(*cfg.FaultModel); err != nil {
			return nil, err
		}
	}
	if !cfg.NoStub {
		if err := c.startStub(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.RestartIssuer(ctx); err != nil {
		return nil, err
	}
	if cfg.NoGateway {
		return c, nil
	}
	if !cfg.NoStub && !cfg.SkipModelSetup {
		if err := c.configureStub(ctx); err != nil {
			return nil, err
		}
	}
	c.issuerFront = c.IssuerGRPC
	if cfg.IssuerFront != nil {
		if c.issuerFront, err = cfg.IssuerFront(c.IssuerGRPC); err != nil {
			return nil, err
		}
	}
	if err := c.RestartGateway(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// pickAddrs chooses a free loopback port for every listener the
// configuration asks for.
func (c *Cluster) pickAddrs() (err error) {
	addrs := []*string{&c.IssuerGRPC, &c.IssuerHTTP, &c.GatewayGRPC, &c.GatewayAPI}
	if c.cfg.GatewayHTTP {
		addrs = append(addrs, &c.GatewayHTTP)
	}
	if c.cfg.MutualTLS {
		addrs = append(addrs, &c.GatewayHealth)
	}
	if !c.cfg.NoStub {
		addrs = append(addrs, &c.StubAddr)
	}
	for _, a := range addrs {
		if *a, err = FreeAddr(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startStub(ctx context.Context) (err error) {
	c.Stub, err = StartProc("stubmodel", []string{filepath.Join(c.cfg.BinDir, "stubmodel"), "--addr", c.StubAddr,
		"--tokens", strconv.Itoa(c.cfg.StubTokens), "--delay", c.cfg.StubDelay.String()}, c.logPath("stubmodel"))
	if err != nil {
		return err
	}
	return c.waitHTTP(ctx, c.Stub, "http://"+c.StubAddr+"/healthz")
}

// Close closes the cluster's client connections and stops the processes,
// gateway first, then the fault model. It may be called more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	for _, cc := range []*grpc.ClientConn{c.gatewayConn, c.issuerConn} {
		if cc != nil {
			cc.Close()
		}
	}
	c.gatewayConn, c.issuerConn = nil, nil
	c.mu.Unlock()
	for _, p := range []*Proc{c.Gateway, c.Issuer, c.Stub} {
		if p != nil {
			p.Stop(grace)
		}
	}
	if c.Faults != nil {
		_ = c.Faults.Close()
	}
	c.http.CloseIdleConnections()
}

// IssuerURL is the iss claim of the cluster's tokens (https under
// MutualTLS).
func (c *Cluster) IssuerURL() string {
	if c.cfg.MutualTLS {
		return "https://" + c.IssuerHTTP
	}
	return "http://" + c.IssuerHTTP
}

// JWKSURL is the issuer's HTTP JWKS, the document a gateway started with
// --jwks-url verifies with.
func (c *Cluster) JWKSURL() string { return c.IssuerURL() + "/oauth/discovery/keys" }

// RestartIssuer stops the issuer if it runs (gracefully), starts it again
// on the same addresses and data directory with Config.IssuerArgs followed
// by extraArgs (e.g. --postgres-url after a migration), and waits until it
// is healthy. The cluster's issuer connection is replaced. After
// Issuer.Kill it recovers from a crash.
func (c *Cluster) RestartIssuer(ctx context.Context, extraArgs ...string) error {
	if c.Issuer != nil {
		c.Issuer.Stop(grace)
	}
	argv := []string{filepath.Join(c.cfg.BinDir, "issuer"), "--data-dir", c.DataDir,
		"--grpc-addr", c.IssuerGRPC, "--http-addr", c.IssuerHTTP, "--issuer-url", c.IssuerURL()}
	if c.cfg.MutualTLS {
		kek, err := c.kekFile()
		if err != nil {
			return err
		}
		argv = append(argv, "--bootstrap", "--kek-file", kek,
			"--tls-cert", c.certFile("issuer"), "--tls-key", c.keyFile("issuer"), "--tls-client-ca", c.CAFile())
	} else {
		// The REST API's direct_access hands out, and its indirect path
		// forwards to, the gateway's HTTP API.
		argv = append(argv, "--dev", "--gateway-api-url", "http://"+c.GatewayAPI)
	}
	argv = append(append(argv, c.cfg.IssuerArgs...), extraArgs...)
	p, err := StartProc("issuer", argv, c.logPath("issuer"))
	if err != nil {
		return err
	}
	c.Issuer = p
	if err := c.replaceConn(&c.issuerConn, c.IssuerGRPC); err != nil {
		return err
	}
	return c.waitGRPC(ctx, p, c.IssuerGRPC)
}

// RestartGateway is LaunchGateway followed by WaitGateway.
func (c *Cluster) RestartGateway(ctx context.Context, extraArgs ...string) error {
	if err := c.LaunchGateway(extraArgs...); err != nil {
		return err
	}
	return c.WaitGateway(ctx)
}

// LaunchGateway stops the gateway if it runs (gracefully) and starts it
// again on the same addresses with Config.GatewayArgs followed by
// extraArgs (e.g. --jwks-url JWKSURL() to verify with the HTTP JWKS). It
// does not wait for the gateway to become healthy, which it does not while
// the issuer is down. The cluster's gateway connection is replaced.
func (c *Cluster) LaunchGateway(extraArgs ...string) error {
	if c.Gateway != nil {
		c.Gateway.Stop(grace)
	}
	argv := c.cfg.GatewayCommand
	if len(argv) == 0 {
		argv = []string{filepath.Join(c.cfg.BinDir, "gateway")}
	}
	argv = append(append([]string{}, argv...), "--grpc-addr", c.GatewayGRPC, "--http-addr", c.GatewayHTTP,
		"--api-http-addr", c.GatewayAPI, "--issuer-addr", c.issuerFront, "--expected-issuer", c.IssuerURL())
	if c.cfg.MutualTLS {
		argv = append(argv, "--health-addr", c.GatewayHealth,
			"--tls-cert", c.certFile("gateway"), "--tls-key", c.keyFile("gateway"), "--tls-client-ca", c.CAFile(),
			"--issuer-ca", c.CAFile(), "--issuer-cert", c.certFile("gateway"), "--issuer-key", c.keyFile("gateway"))
	} else {
		argv = append(argv, "--plaintext", "--issuer-token-file", c.CredentialFile("gateway"))
	}
	argv = append(append(argv, c.cfg.GatewayArgs...), extraArgs...)
	p, err := StartProc("gateway", argv, c.logPath("gateway"))
	if err != nil {
		return err
	}
	c.Gateway = p
	return c.replaceConn(&c.gatewayConn, c.GatewayGRPC)
}

// WaitGateway waits until the gateway reports SERVING (it holds the
// issuer's keys), or fails when it exits or StartTimeout passes. The
// cluster's gateway connection then retries at once if a call made while
// the gateway was starting left it backing off.
func (c *Cluster) WaitGateway(ctx context.Context) error {
	if err := c.waitGRPC(ctx, c.Gateway, c.GatewayGRPC); err != nil {
		return err
	}
	c.GatewayConn().ResetConnectBackoff()
	return nil
}

// IssuerConn is the cluster's connection to the issuer (replaced when the
// issuer restarts; Close closes it). Calls carry no credentials: add a
// user's with AsUser.
func (c *Cluster) IssuerConn() *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issuerConn
}

// GatewayConn is the cluster's connection to the gateway (replaced when
// the gateway restarts; Close closes it). Calls carry no credentials: put
// a token's metadata on the context (Outgoing).
func (c *Cluster) GatewayConn() *grpc.ClientConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gatewayConn
}

// Dial opens a new client connection to addr with the cluster's transport:
// plaintext, or under MutualTLS the "tool" client certificate. The caller
// closes it.
func (c *Cluster) Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if c.clientTLS != nil {
		creds = credentials.NewTLS(c.clientTLS)
	}
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
}

// Dial opens a plaintext client connection to a loopback address.
func Dial(addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
}

func (c *Cluster) replaceConn(dst **grpc.ClientConn, addr string) error {
	cc, err := c.Dial(addr)
	if err != nil {
		return err
	}
	c.mu.Lock()
	old := *dst
	*dst = cc
	c.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// ClientTLS is the "tool" client identity under MutualTLS (trusting the
// cluster's CA), else nil. Callers must not modify it.
func (c *Cluster) ClientTLS() *tls.Config { return c.clientTLS }

// CAFile is the private CA's certificate under MutualTLS.
func (c *Cluster) CAFile() string { return filepath.Join(c.pki, devpki.CACertFile) }

func (c *Cluster) certFile(name string) string { return filepath.Join(c.pki, devpki.CertFile(name)) }
func (c *Cluster) keyFile(name string) string  { return filepath.Join(c.pki, devpki.KeyFile(name)) }

// makePKI creates the private CA and the issuer, gateway and tool
// certificates for 127.0.0.1 and localhost.
func (c *Cluster) makePKI() error {
	c.pki = filepath.Join(c.cfg.WorkDir, "pki")
	if err := devpki.CreateCAFiles(c.pki, "airlock test cluster CA", 24*time.Hour); err != nil {
		return err
	}
	loop := []net.IP{net.ParseIP("127.0.0.1")}
	for _, name := range []string{"issuer", "gateway", "tool"} {
		if err := devpki.IssueFiles(c.pki, c.pki, name, []string{"localhost"}, loop, 24*time.Hour); err != nil {
			return err
		}
	}
	tc, err := tlsconfig.Client(c.CAFile(), c.certFile("tool"), c.keyFile("tool"), "")
	if err != nil {
		return err
	}
	c.clientTLS = tc
	return nil
}

// kekFile writes a fresh random key-encryption key once (--dev generates
// its own; --bootstrap with TLS needs one given).
func (c *Cluster) kekFile() (string, error) {
	p := filepath.Join(c.cfg.WorkDir, "kek")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return p, os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.cfg.WorkDir, name+".log") }

func (c *Cluster) waitGRPC(ctx context.Context, p *Proc, addr string) error {
	return c.waitFor(ctx, p, func() error { return healthprobe.Check(ctx, addr, "", c.clientTLS, time.Second) })
}

func (c *Cluster) waitHTTP(ctx context.Context, p *Proc, url string) error {
	return c.waitFor(ctx, p, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
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

// waitFor polls probe every 100 ms until it succeeds, p exits, ctx ends or
// StartTimeout passes.
func (c *Cluster) waitFor(ctx context.Context, p *Proc, probe func() error) error {
	deadline := time.Now().Add(c.cfg.StartTimeout)
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
	return fmt.Errorf("%s not healthy after %v: %v\n%s", p.Name, c.cfg.StartTimeout, last, strings.TrimSpace(p.Output()))
}
