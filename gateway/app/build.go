package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/providers"
	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/gateway/revocation"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/debugpprof"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// gateway is a built gateway: everything but the listeners. serve runs it
// once; close releases what build opened.
type gateway struct {
	cfg     Config
	log     zerolog.Logger
	metrics *metrics
	issuer  *grpc.ClientConn
	keys    *keyset.Cache
	revoked *revocation.List
	models  *catalog.Catalog
	grpc    *grpc.Server
	health  *health.Server
	// stopping is closed when shutdown begins: it ends health watches.
	stopping chan struct{}
	http     *http.Server // nil when --http-addr is empty
	// api serves the HTTP API dialects (nil when --api-http-addr is
	// empty), over apiTLS unless --plaintext.
	api    http.Handler
	apiTLS *tls.Config
	// capped are the listeners under --max-connections-per-address, set by
	// listen before any task runs.
	capped []*connlimit.Listener
}

// streamWorkers is the number of gRPC stream workers (grpc.NumStreamWorkers):
// enough for the concurrent streams of a busy gateway, few enough that the
// idle ones (a goroutine and its grown stack each) cost little.
const streamWorkers = 64

// build validates cfg and wires the gateway: the issuer connection (not
// dialled yet), the key, revocation and model sources, the verifier, the
// completion service on the gRPC server, and the HTTP handler, without
// listening. On error nothing stays open.
func build(cfg Config, log zerolog.Logger) (_ *gateway, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry() // per gateway: tests run several in one process
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g := &gateway{cfg: cfg, log: log, metrics: newMetrics(reg), stopping: make(chan struct{})}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "airlock_gateway_connections_refused_total",
		Help: "Connections closed at accept because their address held --max-connections-per-address."},
		func() float64 {
			var n uint64
			for _, cl := range g.capped {
				n += cl.Refused()
			}
			return float64(n)
		}))
	if cfg.NoIssuer() {
		log.Warn().Str("jwks_url", cfg.JWKSURL).Msg("running without an issuer: keys from --jwks-url, models named by each request (--allow-request-models); no model catalog and no revocation list, so a token stays valid until it expires")
	} else {
		if g.issuer, err = dialIssuer(cfg, log, telemetry.DialOptions(cfg.Telemetry)...); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, g.issuer.Close())
			}
		}()
	}
	v, err := g.buildSources(reg)
	if err != nil {
		return nil, err
	}
	svc, err := g.buildGRPC(v, reg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.grpc.Stop() // its stream workers run from creation
		}
	}()
	if err := g.buildAPI(v, svc, reg); err != nil {
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		g.http = &http.Server{Handler: g.httpHandler(reg), ReadHeaderTimeout: 5 * time.Second}
	}
	return g, nil
}

// buildSources makes the key set, the revocation list and the model
// catalog, all fed by the issuer, and the verifier that reads the first two.
func (g *gateway) buildSources(reg prometheus.Registerer) (*auth.Verifier, error) {
	cfg, log := g.cfg, g.log
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
	if cfg.JWKSURL != "" {
		g.keys = keyset.NewHTTP(cfg.JWKSURL, nil, ksOpts)
	} else {
		g.keys = keyset.NewGRPC(g.issuer, ksOpts)
	}
	var revoked func(string) bool // nil: nothing is revoked (no issuer)
	if g.issuer != nil {
		g.revoked = revocation.NewGRPC(g.issuer, revocation.Options{
			Logger:   log.With().Str("component", "revocation").Logger(),
			OnRevoke: func(jti string) { v.Evict(jti) },
		})
		revoked = g.revoked.Revoked
		g.models = catalog.New(issuerv1.NewModelServiceClient(g.issuer), catalog.Options{Logger: log.With().Str("component", "catalog").Logger()})
	} else {
		// Never fed: every lookup answers ErrNotReady, so only requests
		// naming their model are served.
		g.models = catalog.New(nil, catalog.Options{})
	}
	authMetrics, err := auth.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = -1 // auth.Config reads 0 as "default"; --leeway 0s means none
	}
	v, err = auth.NewVerifier(auth.Config{
		Keys:          g.keys,
		Revoked:       revoked,
		Issuer:        cfg.ExpectedIssuer,
		Audience:      cfg.Audience,
		Leeway:        leeway,
		MaxLifetime:   cfg.MaxTokenLifetime,
		MaxTokenBytes: cfg.MaxTokenBytes,
		Metrics:       authMetrics,
		Failures:      auth.NewFailureLimiter(cfg.AuthFailuresPerMinute, auth.DefaultMaxClients, nil),
	})
	return v, err
}

// buildGRPC makes the completion service and the gRPC server it runs on,
// and returns the service for the HTTP API to share.
func (g *gateway) buildGRPC(v *auth.Verifier, reg prometheus.Registerer) (*completion.Service, error) {
	cfg := g.cfg
	svc, err := completion.New(completion.Config{
		Router:    g.models,
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
		Logger:        g.log.With().Str("component", "completion").Logger(),
		Observer:      g.metrics,
		WrapTransport: telemetry.HTTPTransport(cfg.Telemetry),
	})
	if err != nil {
		return nil, err
	}
	serverOpts := append(telemetry.ServerOptions(cfg.Telemetry),
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxConcurrentStreams(cfg.MaxConnStream),
		// Streams run on long-lived workers whose stacks have already grown
		// to what a completion needs, instead of a new goroutine per stream
		// that grows (copies) its stack on every call (5 % of the CPU under
		// load); streams beyond the workers still get their own goroutine.
		grpc.NumStreamWorkers(streamWorkers),
	)
	serverOpts = append(serverOpts, rpcserver.KeepaliveServerOptions()...)
	// A connection with no call for 5 minutes is closed, so idle ones do
	// not pile up; the clients reconnect on demand. (Later options win.)
	serverOpts = append(serverOpts, grpc.KeepaliveParams(keepalive.ServerParameters{
		Time: 2 * time.Minute, Timeout: 20 * time.Second, MaxConnectionIdle: 5 * time.Minute}))
	// Headers hold the token (at most --max-token-bytes) and a few short
	// x-gitlab-* values.
	serverOpts = append(serverOpts, rpcserver.PreAuthOptions(cfg.HandshakeTimeout, uint32(min(max(64<<10, 2*cfg.MaxTokenBytes), 1<<30)))...)
	if cfg.Plaintext {
		g.log.Warn().Str("addr", cfg.GRPCAddr).Msg("serving plaintext gRPC (--plaintext): tokens cross the network unencrypted; use only for local development")
	} else {
		tc, err := tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA)
		if err != nil {
			return nil, err
		}
		serverOpts = append(serverOpts, grpc.Creds(rpcserver.TLSCredentials(tc, g.log)))
	}
	g.grpc, g.health = rpcserver.New(rpcserver.Options{
		Logger:        g.log,
		Auth:          v.AuthFunc,
		StreamFirst:   []grpc.StreamServerInterceptor{g.metrics.stream},
		Registerer:    reg,
		ServerOptions: serverOpts,
		Stopping:      g.stopping,
	})
	svc.Register(g.grpc)
	return svc, nil
}

// httpHandler serves metrics, a liveness view of the key set (with the age
// of the revocation view as detail), and with
// --pprof the runtime profiles.
func (g *gateway) httpHandler(reg prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	if g.cfg.Pprof {
		mux.Handle(debugpprof.Prefix, debugpprof.Handler())
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.keys.Ready() {
			http.Error(w, "no verification keys", http.StatusServiceUnavailable)
			return
		}
		// The first line is the verdict; the rest is detail for people.
		if g.revoked == nil {
			_, _ = fmt.Fprint(w, "ok\nrevocations none: no issuer, tokens are valid until they expire\n")
			return
		}
		_, _ = fmt.Fprintf(w, "ok\nrevocations_age_seconds %.0f\n", g.revoked.Age().Seconds())
	})
	return mux
}

// close releases what build opened. Call it after serve returned (or
// instead of serve).
func (g *gateway) close() error {
	g.grpc.Stop() // no-op after serve stopped it; ends the stream workers otherwise
	if g.issuer == nil {
		return nil
	}
	return g.issuer.Close()
}

// ready reports whether the gateway can serve: it holds a key set and,
// unless it runs without an issuer, the model configuration. The error
// says what is missing.
func (g *gateway) ready() error {
	switch {
	case !g.keys.Ready():
		return errors.New("no verification keys loaded yet")
	case !g.cfg.NoIssuer() && !g.models.Ready():
		return errors.New("model configuration not received from the issuer yet")
	}
	return nil
}
