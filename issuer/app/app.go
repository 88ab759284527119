// Package app wires the issuer: configuration, the store, the key manager,
// the gRPC services and the HTTP endpoints, and runs them until a signal.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/api/keysvc"
	"github.com/airlock-dev/airlock/issuer/api/limits"
	"github.com/airlock-dev/airlock/issuer/api/modelsvc"
	"github.com/airlock-dev/airlock/issuer/api/tokensvc"
	"github.com/airlock-dev/airlock/issuer/api/usersvc"
	"github.com/airlock-dev/airlock/issuer/httpapi"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/storemigrate"
	"github.com/airlock-dev/airlock/pkg/debugpprof"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Main runs the issuer binary with args (without the program name) and
// returns the process exit code: 0 after a clean shutdown, 1 on a runtime
// failure, 2 on bad usage.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthprobe.Main("issuer", "127.0.0.1:9440", args[1:], os.Stderr)
	}
	if len(args) > 0 && args[0] == "migrate-store" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return storemigrate.Main(ctx, args[1:], os.Stdout, os.Stderr)
	}
	cfg, err := ParseConfig(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "issuer:", err)
		return 2
	}
	log := NewLogger(os.Stderr, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, log, nil); err != nil {
		log.Error().Err(err).Msg("issuer failed")
		return 1
	}
	return 0
}

// NewLogger returns the JSON logger on w at level (info if unparsable).
func NewLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "issuer").Logger()
}

// serverTLS returns the TLS configs for gRPC (client certificates required
// when a client CA is set) and HTTP (client certificates optional, so
// third-party verifiers can fetch the public JWKS), or nils for plaintext.
func serverTLS(c Config) (grpcTLS, httpTLS *tls.Config, err error) {
	if c.TLSCert == "" {
		return nil, nil, nil
	}
	grpcTLS, err = tlsconfig.Server(c.TLSCert, c.TLSKey, c.TLSClientCA)
	if err != nil {
		return nil, nil, err
	}
	httpTLS = grpcTLS.Clone()
	if c.TLSClientCA != "" {
		httpTLS.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return grpcTLS, httpTLS, nil
}

// debugHandler serves runtime profiles when --pprof is set.
func debugHandler(c Config) http.Handler {
	if !c.Pprof {
		return nil
	}
	return debugpprof.Handler()
}

// gatewayCert is the certificate identity that authenticates the gateway:
// only meaningful when client certificates are verified (mutual TLS).
func gatewayCert(c Config) string {
	if c.TLSClientCA == "" {
		return ""
	}
	return c.GatewayCertID
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Addrs are the addresses Run listens on (useful with port 0).
type Addrs struct {
	GRPC string
	HTTP string
}

// Run runs the issuer until ctx is done, then shuts down gracefully. ready,
// if non-nil, is called with the bound addresses once the issuer is serving.
// The clock is time.Now; key rotation is checked every 30 s.
func Run(ctx context.Context, cfg Config, log zerolog.Logger, ready func(Addrs)) error {
	return run(ctx, cfg, log, time.Now, ready)
}

func run(ctx context.Context, cfg Config, log zerolog.Logger, now func() time.Time, ready func(Addrs)) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	devDir := ""
	if cfg.Dev {
		devDir = cfg.DataDir
	}
	k, err := kek.Load(cfg.KEKFile, os.Getenv(EnvKEK), devDir)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}()
	instanceID, err := st.InitInstanceID(ctx, uuid.NewString())
	if err != nil {
		return fmt.Errorf("instance id: %w", err)
	}
	km, err := keys.New(ctx, keys.Config{
		Store: st, KEK: k, Alg: cfg.KeyAlg, RotationPeriod: cfg.RotationPeriod,
		MaxTokenTTL: cfg.MaxTokenTTL, Now: now, Logger: log,
	})
	if err != nil {
		return err
	}
	if cfg.Bootstrap || cfg.Dev {
		created, err := bootstrap(ctx, st, cfg.DataDir, now())
		if err != nil {
			return err
		}
		if created {
			// The path only: the tokens themselves are never logged.
			log.Info().Str("dir", cfg.DataDir+"/credentials").Msg("bootstrap users admin, demo and gateway created; their tokens are in this directory")
		}
	}
	mint, err := minter.New(minter.Config{
		Signer: km, Recorder: st, Issuer: cfg.IssuerURL, InstanceID: instanceID,
		DefaultTTL: cfg.TokenTTL, MaxTTL: cfg.MaxTokenTTL, Now: now,
	})
	if err != nil {
		return err
	}
	tokens, err := tokensvc.New(ctx, tokensvc.Config{Minter: mint, Store: st, Now: now, Logger: log,
		MintRate: limits.NewRate(cfg.MintRatePerUser)})
	if err != nil {
		return err
	}
	models, err := modelsvc.New(ctx, modelsvc.Config{Store: st, KEK: k, Now: now, Logger: log, MaxModels: cfg.MaxModels})
	if err != nil {
		return err
	}

	grpcTLS, httpTLS, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	shutdownTracing, err := telemetry.Setup(ctx, "airlock-issuer", cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = shutdownTracing(sctx)
	}()
	srvOpts := telemetry.ServerOptions(cfg.Telemetry)
	if grpcTLS != nil {
		srvOpts = append(srvOpts, grpc.Creds(credentials.NewTLS(grpcTLS)))
	} else {
		log.Warn().Str("addr", cfg.GRPCAddr).Bool("loopback", isLoopback(cfg.GRPCAddr)).
			Msg("serving gRPC in plaintext (--plaintext or --dev): personal access tokens and tokens cross the network in clear; use only for local development")
	}
	public := map[string]bool{}
	for _, m := range keysvc.PublicMethods {
		public[m] = true
	}
	// A registry per Run (not the global one): tests run several issuers in
	// one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st.report(log, reg)
	srv, hs := rpcserver.New(rpcserver.Options{
		Logger:          log,
		Auth:            authn.New(st, now, authn.WithGatewayCertificate(gatewayCert(cfg))),
		Public:          func(m string) bool { return public[m] },
		ServerOptions:   srvOpts,
		Registerer:      reg,
		StreamAfterAuth: []grpc.StreamServerInterceptor{limits.NewStreams(cfg.MaxWatchesPerCaller).Interceptor()},
	})
	keysvc.New(keysvc.Config{Keys: km, Logger: log}).Register(srv)
	tokens.Register(srv)
	models.Register(srv)
	usersvc.New(usersvc.Config{Store: st, Now: now, Logger: log, MaxUsers: cfg.MaxUsers}).Register(srv)

	glis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	hlis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		glis.Close()
		return fmt.Errorf("--http-addr: %w", err)
	}
	if httpTLS != nil {
		hlis = tls.NewListener(hlis, httpTLS)
	} else if !isLoopback(cfg.HTTPAddr) {
		log.Warn().Str("addr", cfg.HTTPAddr).Msg("serving HTTP in plaintext on a non-loopback address")
	}
	hsrv := &http.Server{
		Handler:           httpapi.Handler(httpapi.Config{Keys: km, Issuer: cfg.IssuerURL, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Debug: debugHandler(cfg), Now: now}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	var healthLis net.Listener
	if cfg.HealthAddr != "" {
		if healthLis, err = net.Listen("tcp", cfg.HealthAddr); err != nil {
			glis.Close()
			hlis.Close()
			return fmt.Errorf("--health-addr: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	if healthLis != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rpcserver.ServeHealth(ctx, healthLis, hs); err != nil {
				errc <- fmt.Errorf("health: %w", err)
				cancel()
			}
		}()
	}
	wg.Add(4)
	go func() { defer wg.Done(); km.Run(ctx, 30*time.Second) }()
	go func() { defer wg.Done(); tokens.Run(ctx, time.Minute) }()
	go func() {
		defer wg.Done()
		if err := hsrv.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := rpcserver.Serve(ctx, srv, glis, cfg.ShutdownGrace); err != nil {
			errc <- fmt.Errorf("grpc: %w", err)
		}
		cancel()
	}()
	// Keys are loaded (keys.New succeeded): the issuer can really serve.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	log.Info().Str("grpc_addr", glis.Addr().String()).Str("http_addr", hlis.Addr().String()).
		Str("instance_id", instanceID).Str("issuer", cfg.IssuerURL).Msg("issuer serving")
	if ready != nil {
		ready(Addrs{GRPC: glis.Addr().String(), HTTP: hlis.Addr().String()})
	}

	<-ctx.Done()
	hs.Shutdown() // NOT_SERVING to health checkers while draining
	sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	_ = hsrv.Shutdown(sctx)
	scancel()
	wg.Wait()
	close(errc)
	log.Info().Msg("issuer stopped")
	return <-errc
}
