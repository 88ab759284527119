package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/api/bounds"
	"github.com/airlock-dev/airlock/issuer/api/keysvc"
	"github.com/airlock-dev/airlock/issuer/api/limits"
	"github.com/airlock-dev/airlock/issuer/api/modelsvc"
	"github.com/airlock-dev/airlock/issuer/api/tokensvc"
	"github.com/airlock-dev/airlock/issuer/api/usersvc"
	"github.com/airlock-dev/airlock/issuer/globalid"
	"github.com/airlock-dev/airlock/issuer/httpapi"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/restapi"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// issuer is a built issuer: everything but the listeners. serve runs it
// once; close releases what build opened.
type issuer struct {
	cfg        Config
	log        zerolog.Logger
	now        func() time.Time
	store      openedStore
	instanceID string
	globalIDs  *globalid.Deriver
	keys       *keys.Manager
	tokens     *tokensvc.Service
	models     *modelsvc.Service
	// gate says whether this replica advances the key lifecycle:
	// keys.Always on bbolt, the rotation lease on PostgreSQL (lease).
	gate  keys.Gate
	lease *pgstore.Lease // nil on bbolt
	// storeUp is airlock_issuer_store_up (PostgreSQL only).
	storeUp prometheus.Gauge
	grpc    *grpc.Server
	health  *health.Server
	// stopping is closed when shutdown begins: it ends the watch streams.
	stopping chan struct{}
	http     *http.Server
	httpTLS  *tls.Config // nil: plaintext
	// mint and mintRate are shared by the gRPC MintToken and the REST API,
	// so both count against one per-user budget.
	mint     *minter.Minter
	mintRate tokensvc.Limiter
	// pats checks personal access tokens for gRPC and REST alike, so an
	// address's invalid ones count against one lockout.
	pats    *authn.PATs
	gateway *restapi.HTTPGateway // nil without --gateway-api-url
}

// watchMethods are the issuer's long-lived streams: they end at once when
// the issuer stops, and the gateways reconnect.
var watchMethods = map[string]bool{
	issuerv1.KeyService_WatchKeys_FullMethodName:          true,
	issuerv1.TokenService_WatchRevocations_FullMethodName: true,
	issuerv1.ModelService_WatchModels_FullMethodName:      true,
}

// build validates cfg, opens the store, loads (or creates) the keys,
// bootstraps users when asked, and wires the gRPC services and the HTTP
// handler, without listening. On error nothing stays open.
func build(ctx context.Context, cfg Config, log zerolog.Logger, now func() time.Time) (_ *issuer, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	devDir := ""
	if cfg.Dev {
		devDir = cfg.DataDir
	}
	k, err := kek.Load(cfg.KEKFile, os.Getenv(EnvKEK), devDir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, st.Close())
		}
	}()
	s := &issuer{cfg: cfg, log: log, now: now, store: st, stopping: make(chan struct{})}
	if s.instanceID, err = st.InitInstanceID(ctx, uuid.NewString()); err != nil {
		return nil, fmt.Errorf("instance id: %w", err)
	}
	guKey, err := globalid.LoadKey(ctx, st, k)
	if err != nil {
		return nil, err
	}
	if s.globalIDs, err = globalid.New(guKey, s.instanceID); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry() // per issuer: tests run several in one process
	s.gate = keys.Always
	if st.pg != nil {
		s.lease = newRotationLease(st.pg, log, reg)
		s.gate = s.lease
		s.storeUp = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "airlock_issuer_store_up",
			Help: "1 while the issuer's PostgreSQL database answers (checked every 2 s), else 0.",
		})
		s.storeUp.Set(1)
		reg.MustRegister(s.storeUp)
	}
	s.keys, err = keys.New(ctx, keys.Config{
		Store: st, KEK: k, Alg: cfg.KeyAlg, RotationPeriod: cfg.RotationPeriod,
		MaxTokenTTL: cfg.MaxTokenTTL, Now: now, Logger: log, Gate: s.gate,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Bootstrap || cfg.Dev {
		created, err := bootstrap(ctx, st, cfg.DataDir, now())
		if err != nil {
			return nil, err
		}
		if created {
			// The path only: the tokens themselves are never logged.
			log.Info().Str("dir", cfg.DataDir+"/credentials").Msg("bootstrap users admin, demo and gateway created; their tokens are in this directory")
		}
	}
	st.report(log, reg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := s.buildGRPC(ctx, k, reg); err != nil {
		return nil, err
	}
	rest, err := s.buildREST()
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler: httpapi.Handler(httpapi.Config{Keys: s.keys, Issuer: cfg.IssuerURL, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Registerer: reg,
			Debug: debugHandler(cfg), API: rest, APIPatterns: restapi.Patterns, Now: now}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return s, nil
}

// maxRecvBytes bounds one request message at the issuer.
const maxRecvBytes = 1 << 20

// buildGRPC makes the gRPC server with the four services.
func (s *issuer) buildGRPC(ctx context.Context, k *kek.KEK, reg prometheus.Registerer) error {
	cfg, log, now, st := s.cfg, s.log, s.now, s.store
	var err error
	s.mintRate = s.newMintRate()
	s.pats = authn.NewPATs(st, now, authn.NewLockout(cfg.AuthFailureRatePerAddr))
	lockouts := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "airlock_issuer_auth_lockouts_total",
		Help: "Addresses locked out for presenting too many invalid personal access tokens (--auth-failure-rate-per-address).",
	})
	reg.MustRegister(lockouts)
	s.pats.OnLockout(func(from string) {
		lockouts.Inc()
		log.Warn().Str("peer", from).Int("per_minute", cfg.AuthFailureRatePerAddr).
			Msg("address locked out: too many invalid personal access tokens; its PATs are refused until its allowance refills")
	})
	s.mint, err = minter.New(minter.Config{
		Signer: s.keys, Recorder: st.Store, GlobalIDs: s.globalIDs, Issuer: cfg.IssuerURL, InstanceID: s.instanceID,
		DefaultTTL: cfg.TokenTTL, MaxTTL: cfg.MaxTokenTTL, Now: now,
	})
	if err != nil {
		return err
	}
	if s.tokens, err = tokensvc.New(ctx, tokensvc.Config{Minter: s.mint, Store: st, Now: now, Logger: log,
		MintRate: s.mintRate}); err != nil {
		return err
	}
	s.models, err = modelsvc.New(ctx, modelsvc.Config{Store: st, KEK: k, Now: now, Logger: log, MaxModels: cfg.MaxModels})
	if err != nil {
		return err
	}
	grpcTLS, httpTLS, err := serverTLS(cfg)
	if err != nil {
		return err
	}
	s.httpTLS = httpTLS
	srvOpts := append(telemetry.ServerOptions(cfg.Telemetry), rpcserver.KeepaliveServerOptions()...)
	// Headers hold a personal access token and a few short values. The
	// largest valid request (a CreateModel at every bound of
	// issuer/api/bounds) is under 16 KiB, so anything over maxRecvBytes is
	// refused by the transport before it is decoded.
	srvOpts = append(srvOpts, rpcserver.PreAuthOptions(cfg.HandshakeTimeout, 64<<10)...)
	srvOpts = append(srvOpts, grpc.MaxRecvMsgSize(maxRecvBytes))
	if grpcTLS != nil {
		srvOpts = append(srvOpts, grpc.Creds(rpcserver.TLSCredentials(grpcTLS, log)))
	} else {
		log.Warn().Str("addr", cfg.GRPCAddr).Bool("loopback", isLoopback(cfg.GRPCAddr)).
			Msg("serving gRPC in plaintext (--plaintext or --dev): personal access tokens and tokens cross the network in clear; use only for local development")
	}
	public := map[string]bool{}
	for _, m := range keysvc.PublicMethods {
		public[m] = true
	}
	s.grpc, s.health = rpcserver.New(rpcserver.Options{
		Logger:          log,
		Auth:            authn.New(s.pats, authn.WithGatewayCertificate(gatewayCert(cfg))),
		Public:          func(m string) bool { return public[m] },
		ServerOptions:   srvOpts,
		Registerer:      reg,
		UnaryAfterAuth:  []grpc.UnaryServerInterceptor{bounds.Unary},
		StreamAfterAuth: []grpc.StreamServerInterceptor{limits.NewStreams(cfg.MaxWatchesPerCaller).Interceptor()},
		LongLived:       func(m string) bool { return watchMethods[m] },
		Stopping:        s.stopping,
	})
	keysvc.New(keysvc.Config{Keys: s.keys, Logger: log}).Register(s.grpc)
	s.tokens.Register(s.grpc)
	s.models.Register(s.grpc)
	usersvc.New(usersvc.Config{Store: st, Now: now, Logger: log, MaxUsers: cfg.MaxUsers}).Register(s.grpc)
	return nil
}

// buildREST makes the instance's REST API (/api/v4), forwarding to the
// gateway's HTTP API when --gateway-api-url is set.
func (s *issuer) buildREST() (*restapi.API, error) {
	cfg := s.cfg
	rc := restapi.Config{
		PATs: s.pats, Minter: s.mint, Limiter: s.mintRate, GlobalIDs: s.globalIDs,
		InstanceID: s.instanceID, InstanceURL: cfg.IssuerURL, HostName: hostName(cfg.IssuerURL),
		ForwardTimeout: cfg.GatewayAPITimeout, Logger: s.log, Now: s.now,
	}
	if cfg.GatewayAPIURL != "" {
		u, err := restapi.ParseGatewayURL(cfg.GatewayAPIURL)
		if err != nil {
			return nil, fmt.Errorf("--gateway-api-url: %w", err)
		}
		var tlsConf *tls.Config
		if u.Scheme == "https" {
			if tlsConf, err = tlsconfig.Client(cfg.GatewayAPICA, "", "", ""); err != nil {
				return nil, fmt.Errorf("--gateway-api-ca: %w", err)
			}
		}
		gw, err := restapi.NewHTTPGateway(cfg.GatewayAPIURL, tlsConf)
		if err != nil {
			return nil, fmt.Errorf("--gateway-api-url: %w", err)
		}
		s.gateway, rc.Gateway, rc.GatewayURL = gw, gw, strings.TrimRight(cfg.GatewayAPIURL, "/")
	}
	return restapi.New(rc)
}

// hostName is the host of the instance URL (x-gitlab-host-name).
func hostName(instanceURL string) string {
	u, err := url.Parse(instanceURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// newMintRate is the per-user mint limiter: one bucket per user in the shared
// database on PostgreSQL (so N replicas do not allow N times the limit), in
// memory on bbolt.
func (s *issuer) newMintRate() tokensvc.Limiter {
	if s.store.pg != nil {
		return s.store.pg.NewRate(s.cfg.MintRatePerUser)
	}
	return limits.NewRate(s.cfg.MintRatePerUser)
}

// close releases what build opened. Call it after serve returned (or
// instead of serve).
func (s *issuer) close() error {
	if s.gateway != nil {
		s.gateway.Close()
	}
	return s.store.Close()
}
