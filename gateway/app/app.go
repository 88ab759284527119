// Package app wires the gateway: it loads the configuration, connects to the
// issuer (keys, revocations, model configuration), builds the token verifier
// and the completion service on one gRPC server, serves metrics and health
// over HTTP, and shuts down gracefully.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/providers"
	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/gateway/revocation"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/debugpprof"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Main runs the gateway command and returns the exit code.
// `gateway healthcheck [--addr A]` probes a running gateway instead.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthprobe.Main("gateway", "127.0.0.1:9450", args[1:], stderr)
	}
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "gateway: %v\n", err)
		}
		return 2
	}
	log := newLogger(stderr, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, log); err != nil {
		log.Error().Err(err).Msg("gateway stopped with an error")
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "gateway").Logger()
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	shutdownTracing, err := telemetry.Setup(ctx, "airlock-gateway", cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = shutdownTracing(sctx)
	}()

	// Issuer connection: keys, revocations, model configuration.
	issuerConn, err := dialIssuer(cfg, log, telemetry.DialOptions(cfg.Telemetry)...)
	if err != nil {
		return err
	}
	defer issuerConn.Close()

	// The verifier is built after its key and revocation sources, which
	// must evict cached verdicts through it: the hooks close over v.
	var v *auth.Verifier
	ksOpts := keyset.Options{
		MaxStaleness: cfg.MaxStaleness,
		Logger:       log.With().Str("component", "keyset").Logger(),
		OnKeysRemoved: func(kids []string) {
			for _, kid := range kids {
				v.EvictKey(kid)
			}
		},
	}
	var keys *keyset.Cache
	if cfg.JWKSURL != "" {
		keys = keyset.NewHTTP(cfg.JWKSURL, nil, ksOpts)
	} else {
		keys = keyset.NewGRPC(issuerConn, ksOpts)
	}
	revoked := revocation.NewGRPC(issuerConn, revocation.Options{
		Logger:   log.With().Str("component", "revocation").Logger(),
		OnRevoke: func(jti string) { v.Evict(jti) },
	})
	authMetrics, err := auth.NewMetrics(reg)
	if err != nil {
		return err
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = -1 // auth.Config reads 0 as "default"; --leeway 0s means none
	}
	v, err = auth.NewVerifier(auth.Config{
		Keys:          keys,
		Revoked:       revoked.Revoked,
		Issuer:        cfg.ExpectedIssuer,
		Audience:      cfg.Audience,
		Leeway:        leeway,
		MaxLifetime:   cfg.MaxTokenLifetime,
		MaxTokenBytes: cfg.MaxTokenBytes,
		Metrics:       authMetrics,
		Failures:      auth.NewFailureLimiter(cfg.AuthFailuresPerMinute, auth.DefaultMaxClients, nil),
	})
	if err != nil {
		return err
	}
	models := catalog.New(issuerv1.NewModelServiceClient(issuerConn), catalog.Options{Logger: log.With().Str("component", "catalog").Logger()})

	svc, err := completion.New(completion.Config{
		Router:    models,
		Authorize: auth.Authorize,
		Caller: func(ctx context.Context) (string, string) {
			if id, ok := auth.IdentityFrom(ctx); ok {
				return id.User(), id.JTI
			}
			return "", ""
		},
		Adapters: providers.Registry(),
		Timeouts: adapter.Timeouts{Connect: cfg.ConnectTimeout, FirstByte: cfg.FirstByteTimeout, Idle: cfg.IdleTimeout, Total: cfg.TotalTimeout},
		Limits: completion.Limits{
			MaxMessages:            cfg.MaxMessages,
			MaxPromptBytes:         cfg.MaxPromptBytes,
			MaxAnswerBytes:         cfg.MaxAnswerBytes,
			MaxEventBytes:          cfg.MaxUpstreamEventBytes,
			MaxBodyBytes:           cfg.MaxUpstreamBodyBytes,
			ClientSendTimeout:      cfg.ClientSendTimeout,
			UserRequestsPerMinute:  cfg.UserRequestsPerMinute,
			UserConcurrentStreams:  cfg.UserConcurrentStreams,
			TotalConcurrentStreams: cfg.TotalConcurrentStreams,
		},
		Logger:        log.With().Str("component", "completion").Logger(),
		Observer:      m,
		WrapTransport: telemetry.HTTPTransport(cfg.Telemetry),
	})
	if err != nil {
		return err
	}

	serverOpts := append(telemetry.ServerOptions(cfg.Telemetry),
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxConcurrentStreams(cfg.MaxConnStream),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A connection with no call for 5 minutes is closed, so idle ones
		// do not pile up; the clients reconnect on demand.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second, MaxConnectionIdle: 5 * time.Minute}),
	)
	// Headers hold the token (at most --max-token-bytes) and a few short
	// x-gitlab-* values.
	serverOpts = append(serverOpts, rpcserver.PreAuthOptions(cfg.HandshakeTimeout, uint32(max(64<<10, 2*cfg.MaxTokenBytes)))...)
	if cfg.Plaintext {
		log.Warn().Str("addr", cfg.GRPCAddr).Msg("serving plaintext gRPC (--plaintext): tokens cross the network unencrypted; use only for local development")
	} else {
		tc, err := tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			return err
		}
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(tc)))
	}
	srv, health := rpcserver.New(rpcserver.Options{
		Logger:        log,
		Auth:          v.AuthFunc,
		StreamFirst:   []grpc.StreamServerInterceptor{m.stream},
		Registerer:    reg,
		ServerOptions: serverOpts,
	})
	svc.Register(srv)

	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	perAddr := connlimit.New(lis, cfg.MaxConnsPerAddr)
	lis = perAddr
	if cfg.MaxConns > 0 {
		lis = netutil.LimitListener(lis, cfg.MaxConns)
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "airlock_gateway_connections_refused_total",
		Help: "Connections closed at accept because their address held --max-connections-per-address."},
		func() float64 { return float64(perAddr.Refused()) }))
	go keys.Run(ctx)
	if cfg.IssuerAddr != "" {
		go revoked.Run(ctx)
		go models.Run(ctx)
	}
	go watchHealth(ctx, keys, models, health, m, log)
	if cfg.HealthAddr != "" {
		hl, err := net.Listen("tcp", cfg.HealthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr: %w", err)
		}
		go func() {
			if err := rpcserver.ServeHealth(ctx, hl, health); err != nil {
				log.Error().Err(err).Msg("health listener failed")
			}
		}()
	}

	var httpSrv *http.Server
	if cfg.HTTPAddr != "" {
		httpSrv, err = serveHTTP(cfg.HTTPAddr, reg, keys, cfg.Pprof, log)
		if err != nil {
			return err
		}
		defer httpSrv.Close()
	}
	log.Info().Str("grpc_addr", lis.Addr().String()).Str("http_addr", cfg.HTTPAddr).Str("issuer", cfg.IssuerAddr).
		Str("expected_issuer", cfg.ExpectedIssuer).Msg("gateway started")
	err = rpcserver.Serve(ctx, srv, lis, cfg.ShutdownGrace)
	log.Info().Msg("gateway stopped")
	return err
}

// dialIssuer opens the connection the gateway uses for everything it reads
// from the issuer, authenticated with its personal access token or, with
// mutual TLS, its client certificate.
func dialIssuer(cfg Config, log zerolog.Logger, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if cfg.IssuerAddr == "" {
		return nil, errors.New("--issuer-addr is required")
	}
	var tc credentials.TransportCredentials
	var patOpts []client.CredentialsOption
	if cfg.Plaintext && cfg.IssuerCA == "" {
		log.Warn().Str("issuer", cfg.IssuerAddr).Msg("talking to the issuer without TLS (--plaintext): development only")
		tc = insecure.NewCredentials()
		patOpts = append(patOpts, client.AllowInsecure())
	} else {
		conf, err := tlsconfig.Client(cfg.IssuerCA, cfg.IssuerCert, cfg.IssuerKey, cfg.IssuerServerName)
		if err != nil {
			return nil, err
		}
		tc = credentials.NewTLS(conf)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if cfg.IssuerTokenFile != "" {
		b, err := os.ReadFile(cfg.IssuerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--issuer-token-file: %w", err)
		}
		pat := strings.TrimSpace(string(b))
		if pat == "" {
			return nil, fmt.Errorf("--issuer-token-file %s is empty", cfg.IssuerTokenFile)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(client.PATCredentials(pat, patOpts...)))
	} // else the client certificate (--issuer-cert) is the gateway's identity
	opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
	return grpc.NewClient(cfg.IssuerAddr, append(opts, extra...)...)
}

// watchHealth flips the health service to SERVING only while the gateway
// can really serve: it holds a key set (before the first arrives it cannot
// verify anything) and the model configuration (without it, it cannot route).
func watchHealth(ctx context.Context, keys *keyset.Cache, models *catalog.Catalog, hs interface {
	SetServingStatus(string, healthpb.HealthCheckResponse_ServingStatus)
	Shutdown()
}, m *metrics, log zerolog.Logger) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	serving := false
	for {
		ok := keys.Ready() && models.Ready()
		m.keysetRevision.Set(float64(keys.Revision()))
		if ok {
			m.keysetAge.Set(keys.Age().Seconds())
		}
		if ok != serving {
			serving = ok
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("", st)
			hs.SetServingStatus("airlock.gateway.v1.CompletionService", st)
			log.Info().Bool("serving", ok).Uint64("keyset_revision", keys.Revision()).Msg("health changed")
		}
		select {
		case <-ctx.Done():
			hs.Shutdown() // NOT_SERVING for everyone while draining
			return
		case <-t.C:
		}
	}
}

func serveHTTP(addr string, reg *prometheus.Registry, keys *keyset.Cache, withPprof bool, log zerolog.Logger) (*http.Server, error) {
	mux := http.NewServeMux()
	if withPprof {
		mux.Handle(debugpprof.Prefix, debugpprof.Handler())
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !keys.Ready() {
			http.Error(w, "no verification keys", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("HTTP server failed")
		}
	}()
	return srv, nil
}
