package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/restapi"
	"github.com/airlock-dev/airlock/pkg/flagenv"
	"github.com/airlock-dev/airlock/pkg/keypolicy"
	"github.com/airlock-dev/airlock/pkg/token"

	"github.com/airlock-dev/airlock/pkg/telemetry"
)

// EnvPrefix prefixes every environment variable of the issuer.
const EnvPrefix = "AIRLOCK_ISSUER"

// EnvKEK holds the key-encryption key (base64 of 32 bytes) when no
// --kek-file is given. It is deliberately not a flag: secrets do not belong
// on command lines, which other local users can read.
const EnvKEK = EnvPrefix + "_KEK"

// Config is the issuer's configuration. Flag names are a contract.
type Config struct {
	GRPCAddr      string
	HTTPAddr      string
	DataDir       string
	PostgresURL   string
	IssuerURL     string
	Dev           bool
	Plaintext     bool
	GatewayCertID string
	Pprof         bool
	HealthAddr    string
	// Per-caller bounds.
	MintRatePerUser     int
	MaxWatchesPerCaller int
	MaxModels           int
	MaxUsers            int
	MaxConnsPerAddr     int
	HandshakeTimeout    time.Duration
	Telemetry           telemetry.Config
	Bootstrap           bool
	KEKFile             string
	KeyAlg              string
	RotationPeriod      time.Duration
	TokenTTL            time.Duration
	MaxTokenTTL         time.Duration
	LogLevel            string
	ShutdownGrace       time.Duration
	TLSCert             string
	TLSKey              string
	TLSClientCA         string
	// The gateway's HTTP API, for the REST API's direct and indirect paths.
	GatewayAPIURL     string
	GatewayAPICA      string
	GatewayAPITimeout time.Duration

	// GCHeapFloorBytes: the garbage collector runs no more often than a
	// heap of this size would make it (pkg/heapfloor); 0 leaves Go's pacing.
	GCHeapFloorBytes uint64

	// AuthFailureRatePerAddr: invalid personal access tokens one address
	// may present per minute before it is locked out (authn.Lockout); 0: no limit.
	AuthFailureRatePerAddr int
}

// ParseConfig reads args, then AIRLOCK_ISSUER_* variables, then the
// --config file, and validates the result.
func ParseConfig(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("issuer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	if err := flagenv.Parse(fs, EnvPrefix, args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

// register defines every setting of c as a flag of fs, with its default.
// A subcommand that needs some of the server's settings (where the store
// is) registers them all, so the server's flags, variables and config file
// work unchanged.
func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:9440", "gRPC listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:9441", "HTTP listen address (JWKS, discovery, health, metrics, the GitLab instance REST API under /api/v4)")
	fs.StringVar(&c.DataDir, "data-dir", "./data/issuer", "directory of the embedded store (back it up while the issuer is stopped, or copy issuer.db)")
	fs.StringVar(&c.PostgresURL, "postgres-url", "", "PostgreSQL database of the store instead of the embedded one: a postgres:// URL or key=value DSN, TLS per its sslmode (prefer a password file or PGPASSWORD to a password in the URL); empty: the embedded store in --data-dir")
	fs.StringVar(&c.IssuerURL, "issuer-url", "http://127.0.0.1:9441", "instance URL: the iss claim and the base of jwks_uri")
	fs.BoolVar(&c.Dev, "dev", false, "dev defaults: generate <data-dir>/kek if no KEK is given, and bootstrap users")
	fs.BoolVar(&c.Bootstrap, "bootstrap", false, "on first start create users admin, demo and gateway and write their tokens to <data-dir>/credentials")
	fs.StringVar(&c.KEKFile, "kek-file", "", "file holding the key-encryption key (base64 of 32 bytes, mode 0600); else env "+EnvKEK)
	fs.StringVar(&c.KeyAlg, "key-alg", keys.RS256, "signing algorithm of new keys: "+keypolicy.AlgList())
	fs.DurationVar(&c.RotationPeriod, "rotation-period", keys.DefaultRotationPeriod, "how long a key signs before the prepared one takes over")
	fs.DurationVar(&c.TokenTTL, "token-ttl", token.DefaultTTL, "default token lifetime")
	fs.DurationVar(&c.MaxTokenTTL, "max-token-ttl", token.DefaultTTL, "longest token lifetime a caller may ask for")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	telemetry.RegisterFlags(fs, &c.Telemetry)
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 10*time.Second, "how long running calls get to finish at shutdown")
	fs.BoolVar(&c.Plaintext, "plaintext", false, "serve without TLS (development only; implied by --dev)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "server certificate (PEM); enables TLS")
	fs.IntVar(&c.MintRatePerUser, "mint-rate-per-user", 120, "tokens a user may mint per minute, as a burst refilled evenly (0: unlimited)")
	fs.IntVar(&c.MaxWatchesPerCaller, "max-watches-per-caller", 64, "open WatchKeys/WatchModels/WatchRevocations streams per caller (user, or IP when anonymous; 0: unlimited)")
	fs.StringVar(&c.HealthAddr, "health-addr", "", "also serve only the gRPC health service, without TLS, here (for probes that cannot present a client certificate); empty: off")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the HTTP port (profiling; keep that port private)")
	fs.IntVar(&c.MaxModels, "max-models", 1000, "models the registry may hold (0: unlimited)")
	fs.IntVar(&c.MaxUsers, "max-users", 10000, "users the issuer may hold (0: unlimited)")
	fs.Uint64Var(&c.GCHeapFloorBytes, "gc-heap-floor-bytes", 32<<20, "collect garbage no more often than a heap of this size would make Go do (fewer pauses under load for a small heap; GOGC applies above it); 0: Go's default pacing")
	fs.IntVar(&c.AuthFailureRatePerAddr, "auth-failure-rate-per-address", 30, "invalid personal access tokens one address (IP, IPv6 /64) may present per minute, gRPC and REST together, as a burst refilled evenly; past it, all its PATs are refused (ResourceExhausted, HTTP 429) until one is allowed again. Callers behind one proxy share its address (0: unlimited)")
	fs.IntVar(&c.MaxConnsPerAddr, "max-connections-per-address", 256, "concurrent gRPC connections from one address (IP, IPv6 /64); more are closed at accept (0: unlimited)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "a new gRPC connection must finish its TLS and HTTP/2 handshake within this, or is closed")
	fs.StringVar(&c.GatewayCertID, "gateway-cert-identity", "spiffe://airlock/gateway", "with mutual TLS, a client certificate with this URI SAN (or common name) is the gateway's service identity, no token needed; empty disables")
	fs.StringVar(&c.TLSKey, "tls-key", "", "server private key (PEM)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "CA bundle (PEM) that client certificates must chain to; enables mutual TLS on gRPC")
	fs.StringVar(&c.GatewayAPIURL, "gateway-api-url", "", "the gateway's public HTTP API URL (its --api-http-addr): base_url of /api/v4/code_suggestions/direct_access, and where /api/v4/code_suggestions/completions is forwarded; empty: direct connections disabled, completions 503")
	fs.StringVar(&c.GatewayAPICA, "gateway-api-ca", "", "CA bundle (PEM) that an https --gateway-api-url's certificate must chain to (default: the system's roots)")
	fs.DurationVar(&c.GatewayAPITimeout, "gateway-api-timeout", restapi.DefaultForwardTimeout, "bound of one completion forwarded to the gateway, its streamed answer included")
}

// Validate checks the configuration, naming the flag at fault.
func (c Config) Validate() error {
	var errs []error
	check := func(bad bool, format string, a ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	u, err := url.Parse(c.IssuerURL)
	check(err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "", "--issuer-url %q: want an absolute http(s) URL", c.IssuerURL)
	check(c.GRPCAddr == "", "--grpc-addr: required")
	check(c.HTTPAddr == "", "--http-addr: required")
	check(c.DataDir == "", "--data-dir: required")
	check(c.HandshakeTimeout <= 0, "--handshake-timeout: must be positive")
	check(!keypolicy.Allowed(c.KeyAlg), "--key-alg %q: want %s", c.KeyAlg, keypolicy.AlgList())
	if c.PostgresURL != "" {
		// pgconn masks the password in what it quotes back.
		_, err := pgconn.ParseConfig(c.PostgresURL)
		check(err != nil, "--postgres-url: %v", err)
	}
	check(c.MaxTokenTTL <= 0, "--max-token-ttl: must be positive")
	check(c.TokenTTL <= 0, "--token-ttl: must be positive")
	check(c.TokenTTL > c.MaxTokenTTL, "--token-ttl %v exceeds --max-token-ttl %v", c.TokenTTL, c.MaxTokenTTL)
	check(c.RotationPeriod < c.MaxTokenTTL, "--rotation-period %v is shorter than --max-token-ttl %v: the next key must be published a full token lifetime before it signs", c.RotationPeriod, c.MaxTokenTTL)
	check(c.ShutdownGrace < 0, "--shutdown-grace: must not be negative")
	check((c.TLSCert == "") != (c.TLSKey == ""), "--tls-cert and --tls-key: set both or neither")
	check(c.TLSCert == "" && !c.Plaintext && !c.Dev, "TLS is required: set --tls-cert and --tls-key, or --plaintext for local development")
	check(c.TLSCert != "" && c.Plaintext, "--plaintext and --tls-cert are mutually exclusive")
	check(c.TLSClientCA != "" && c.TLSCert == "", "--tls-client-ca: needs --tls-cert and --tls-key")
	if c.GatewayAPIURL != "" {
		gu, err := restapi.ParseGatewayURL(c.GatewayAPIURL)
		check(err != nil, "--gateway-api-url %q: %v", c.GatewayAPIURL, err)
		check(err == nil && gu.Scheme == "http" && !c.Plaintext && !c.Dev && !isLoopback(net.JoinHostPort(gu.Hostname(), "0")),
			"--gateway-api-url %q: plaintext http to a non-loopback gateway sends tokens in clear; use https, or --plaintext for local development", c.GatewayAPIURL)
		check(err == nil && gu.Scheme == "http" && c.GatewayAPICA != "", "--gateway-api-ca: needs an https --gateway-api-url")
	} else {
		check(c.GatewayAPICA != "", "--gateway-api-ca: needs --gateway-api-url")
	}
	check(c.GatewayAPITimeout <= 0, "--gateway-api-timeout: must be positive")
	check(c.AuthFailureRatePerAddr < 0, "--auth-failure-rate-per-address: must not be negative (0: unlimited)")
	_, err = zerolog.ParseLevel(c.LogLevel)
	check(err != nil || c.LogLevel == "", "--log-level %q: want debug, info, warn or error", c.LogLevel)
	return errors.Join(errs...)
}
