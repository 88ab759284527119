package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/pkg/flagenv"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/token"
)

// EnvPrefix prefixes every setting's environment variable.
const EnvPrefix = "AIRLOCK_GATEWAY"

// Config is the gateway's whole configuration.
type Config struct {
	GRPCAddr, HTTPAddr string
	// APIHTTPAddr serves the HTTP API (OpenAI-compatible and GitLab
	// dialects); empty: off.
	APIHTTPAddr string

	// Where keys and the model configuration come from.
	IssuerAddr       string
	IssuerTokenFile  string // the gateway's personal access token at the issuer
	IssuerCA         string
	IssuerCert       string
	IssuerKey        string
	IssuerServerName string
	JWKSURL          string // take keys from an HTTP JWKS instead of the issuer's gRPC KeyService

	// GitLab dialect: honour the model a request names, dialled only into
	// these networks. With JWKSURL, the gateway may then run without an
	// issuer (NoIssuer).
	AllowRequestModels   bool
	RequestModelNetworks []string

	// Token checks.
	ExpectedIssuer   string
	Audience         string
	Leeway           time.Duration
	MaxTokenLifetime time.Duration
	MaxStaleness     time.Duration
	MaxTokenBytes    int

	// Serving.
	Plaintext     bool
	TLSCert       string
	TLSKey        string
	TLSClientCA   string
	MaxRecvBytes  int
	MaxConnStream uint32
	MaxConns      int
	// MaxConnsPerAddr and HandshakeTimeout bound one client before it
	// authenticates.
	MaxConnsPerAddr  int
	HandshakeTimeout time.Duration
	ShutdownGrace    time.Duration
	LogLevel         string
	Pprof            bool
	HealthAddr       string

	// Upstream (model servers).
	ConnectTimeout   time.Duration
	FirstByteTimeout time.Duration
	IdleTimeout      time.Duration
	TotalTimeout     time.Duration

	Telemetry telemetry.Config

	// Limits.
	MaxMessages            int
	MaxPromptBytes         int
	MaxAnswerBytes         int
	MaxUpstreamEventBytes  int
	MaxUpstreamBodyBytes   int64
	ClientSendTimeout      time.Duration
	UserRequestsPerMinute  int
	UserConcurrentStreams  int
	TotalConcurrentStreams int
	AuthFailuresPerMinute  int

	// GCHeapFloorBytes: the garbage collector runs no more often than a
	// heap of this size would make it (pkg/heapfloor); 0 leaves Go's pacing.
	GCHeapFloorBytes uint64
}

// NoIssuer reports the issuer-less mode: keys from --jwks-url, models
// named by each request (--allow-request-models), no catalog and no
// revocation list (a token is then valid until it expires).
func (c Config) NoIssuer() bool { return c.IssuerAddr == "" }

// ParseConfig reads args, then AIRLOCK_GATEWAY_* variables, then the
// --config file, and validates the result.
func ParseConfig(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:9450", "gRPC listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:9451", "HTTP listen address (metrics, health); empty disables")
	fs.StringVar(&c.APIHTTPAddr, "api-http-addr", "127.0.0.1:9452", "HTTP API listen address (OpenAI-compatible /v1/..., GitLab's AI gateway /v2/code/..., /v2/chat/agent, ...; TLS as --tls-cert/--tls-key/--tls-client-ca); empty disables")
	fs.StringVar(&c.IssuerAddr, "issuer-addr", "127.0.0.1:9440", "issuer gRPC address (keys, revocations, model configuration): host:port, a comma-separated list of replicas, or dns:///name:port")
	fs.StringVar(&c.IssuerTokenFile, "issuer-token-file", "", "file holding the gateway's personal access token at the issuer (or authenticate with --issuer-cert)")
	fs.StringVar(&c.IssuerCA, "issuer-ca", "", "CA bundle that verifies the issuer's certificate (TLS to the issuer)")
	fs.StringVar(&c.IssuerCert, "issuer-cert", "", "client certificate presented to the issuer (mTLS)")
	fs.StringVar(&c.IssuerKey, "issuer-key", "", "client key for --issuer-cert")
	fs.StringVar(&c.IssuerServerName, "issuer-server-name", "", "expected name in the issuer's certificate (default: host of --issuer-addr)")
	fs.StringVar(&c.JWKSURL, "jwks-url", "", "take verification keys from this HTTP JWKS URL (e.g. a GitLab instance's /oauth/discovery/keys) instead of the issuer's KeyService; models and revocations still come from --issuer-addr, unless --issuer-addr is empty and --allow-request-models is set")
	fs.BoolVar(&c.AllowRequestModels, "allow-request-models", false, "GitLab dialect: honour the model a request names (the GitLab instance's self-hosted model endpoint and key) instead of the catalog's; endpoints are dialled only into --request-model-networks")
	fs.Func("request-model-networks", "comma-separated CIDRs a request-supplied model endpoint may resolve into (required with --allow-request-models)", func(v string) error {
		c.RequestModelNetworks = nil
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				c.RequestModelNetworks = append(c.RequestModelNetworks, n)
			}
		}
		return nil
	})
	fs.StringVar(&c.ExpectedIssuer, "expected-issuer", "http://127.0.0.1:9441", "required iss claim (the issuer's --issuer-url)")
	fs.StringVar(&c.Audience, "audience", token.Audience, "required aud claim")
	fs.DurationVar(&c.Leeway, "leeway", 30*time.Second, "clock leeway for exp, nbf and iat")
	fs.DurationVar(&c.MaxTokenLifetime, "max-token-lifetime", 2*time.Hour, "reject tokens whose exp - iat exceeds this")
	fs.DurationVar(&c.MaxStaleness, "max-staleness", 24*time.Hour, "keep verifying with the last key set this long while the issuer is unreachable")
	fs.IntVar(&c.MaxTokenBytes, "max-token-bytes", 8192, "reject longer bearer tokens before parsing")
	fs.BoolVar(&c.Plaintext, "plaintext", false, "serve without TLS and talk to the issuer without TLS (development only)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "server certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "server key (PEM)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mTLS)")
	fs.IntVar(&c.MaxRecvBytes, "max-recv-bytes", 4<<20, "largest request message accepted")
	var maxConnStreams uint
	fs.UintVar(&maxConnStreams, "max-streams-per-conn", 256, "concurrent streams per client connection")
	fs.IntVar(&c.MaxConns, "max-connections", 4096, "concurrent client connections (0: unlimited)")
	fs.IntVar(&c.MaxConnsPerAddr, "max-connections-per-address", 256, "concurrent client connections from one address (IP, IPv6 /64); more are closed at accept (0: unlimited)")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 10*time.Second, "a new connection must finish its TLS and HTTP/2 handshake within this, or is closed")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 15*time.Second, "on SIGTERM, let running streams finish this long, then cancel them")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.HealthAddr, "health-addr", "", "also serve only the gRPC health service, without TLS, here (for probes that cannot present a client certificate); empty: off")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the HTTP port (profiling; keep that port private)")
	telemetry.RegisterFlags(fs, &c.Telemetry)
	fs.DurationVar(&c.ConnectTimeout, "upstream-connect-timeout", 5*time.Second, "model server TCP/TLS connect timeout")
	fs.DurationVar(&c.FirstByteTimeout, "upstream-first-byte-timeout", 60*time.Second, "longest wait for a model server's response headers, for the whole call: retries and the fallback share this one budget")
	fs.DurationVar(&c.IdleTimeout, "upstream-idle-timeout", 60*time.Second, "longest pause between two chunks of a model's stream")
	fs.DurationVar(&c.TotalTimeout, "upstream-total-timeout", 10*time.Minute, "longest whole upstream call")
	fs.IntVar(&c.MaxMessages, "max-messages", 256, "chat messages per request")
	fs.IntVar(&c.MaxPromptBytes, "max-prompt-bytes", 1<<20, "message contents plus code context per request")
	fs.IntVar(&c.MaxAnswerBytes, "max-answer-bytes", 4<<20, "text of one answer; the stream ends with ResourceExhausted past it")
	fs.Uint64Var(&c.GCHeapFloorBytes, "gc-heap-floor-bytes", 32<<20, "collect garbage no more often than a heap of this size would make Go do (fewer pauses under load for a small heap; GOGC applies above it); 0: Go's default pacing")
	fs.IntVar(&c.MaxUpstreamEventBytes, "max-upstream-event-bytes", 1<<20, "one SSE event or NDJSON line from a model server")
	fs.Int64Var(&c.MaxUpstreamBodyBytes, "max-upstream-body-bytes", 64<<20, "one model server response body")
	fs.DurationVar(&c.ClientSendTimeout, "client-send-timeout", 30*time.Second, "end a stream whose caller has read nothing for this long")
	fs.IntVar(&c.UserRequestsPerMinute, "user-requests-per-minute", 600, "per-user request rate (0: unlimited)")
	fs.IntVar(&c.AuthFailuresPerMinute, "auth-failures-per-minute", 600, "failed authentications per client address (IP, IPv6 /64); past it the address may present only already-verified tokens until its allowance refills (0: unlimited)")
	fs.IntVar(&c.UserConcurrentStreams, "user-concurrent-streams", 32, "per-user concurrent requests (0: unlimited)")
	fs.IntVar(&c.TotalConcurrentStreams, "max-concurrent-streams", 10000, "concurrent requests across all users (0: unlimited)")
	if err := flagenv.Parse(fs, EnvPrefix, args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.MaxConnStream = uint32(maxConnStreams)
	return c, c.Validate()
}

// Validate checks the configuration, naming the flag at fault.
func (c Config) Validate() error {
	var errs []error
	check := func(bad bool, format string, a ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	_, _, err := net.SplitHostPort(c.GRPCAddr)
	check(err != nil, "--grpc-addr %q: %v", c.GRPCAddr, err)
	if c.APIHTTPAddr != "" {
		_, port, err := net.SplitHostPort(c.APIHTTPAddr)
		check(err != nil, "--api-http-addr %q: %v", c.APIHTTPAddr, err)
		// Port 0 picks a free port for each listener, so it collides with none.
		check(port != "0" && (c.APIHTTPAddr == c.GRPCAddr || c.APIHTTPAddr == c.HTTPAddr || c.APIHTTPAddr == c.HealthAddr),
			"--api-http-addr %q is also --grpc-addr, --http-addr or --health-addr: give it its own port (or empty to disable)", c.APIHTTPAddr)
	}
	check(c.IssuerAddr == "" && (c.JWKSURL == "" || !c.AllowRequestModels),
		"--issuer-addr is required: the gateway reads the model configuration and revocations from the issuer (--jwks-url replaces only the source of verification keys; only with --allow-request-models may the gateway run without an issuer)")
	check(c.IssuerAddr != "" && c.IssuerTokenFile == "" && c.IssuerCert == "",
		"--issuer-token-file or --issuer-cert (mutual TLS) is required: the gateway authenticates to the issuer to read models and revocations")
	check(c.AllowRequestModels && len(c.RequestModelNetworks) == 0,
		"--allow-request-models needs --request-model-networks: the networks a request-supplied model endpoint may resolve into")
	check(!c.AllowRequestModels && len(c.RequestModelNetworks) > 0, "--request-model-networks has no effect without --allow-request-models")
	for _, n := range c.RequestModelNetworks {
		_, err := netip.ParsePrefix(n)
		check(err != nil, "--request-model-networks %q: not a CIDR (e.g. 10.0.0.0/8)", n)
	}
	check(c.ExpectedIssuer == "", "--expected-issuer is required: tokens from any other issuer are refused")
	check(c.Audience == "", "--audience must not be empty")
	check(c.HandshakeTimeout <= 0, "--handshake-timeout must be positive")
	check(c.Leeway < 0 || c.Leeway > 5*time.Minute, "--leeway %v: want 0..5m", c.Leeway)
	check(c.MaxTokenLifetime <= 0, "--max-token-lifetime must be positive")
	check(c.MaxStaleness <= 0, "--max-staleness must be positive")
	check(c.MaxTokenBytes < 512, "--max-token-bytes %d: want at least 512", c.MaxTokenBytes)
	check(!c.Plaintext && (c.TLSCert == "" || c.TLSKey == ""), "TLS is required: set --tls-cert and --tls-key, or --plaintext for local development")
	check(c.Plaintext && c.TLSCert != "", "--plaintext and --tls-cert are mutually exclusive")
	check((c.IssuerCert == "") != (c.IssuerKey == ""), "--issuer-cert and --issuer-key go together")
	check(c.MaxRecvBytes < 1024, "--max-recv-bytes %d: want at least 1024", c.MaxRecvBytes)
	check(c.MaxMessages < 1 || c.MaxPromptBytes < 1 || c.MaxAnswerBytes < 1, "--max-messages, --max-prompt-bytes and --max-answer-bytes must be positive")
	check(c.MaxUpstreamEventBytes < 1024 || c.MaxUpstreamBodyBytes < int64(c.MaxUpstreamEventBytes), "--max-upstream-event-bytes must be at least 1024 and at most --max-upstream-body-bytes")
	check(c.ClientSendTimeout <= 0, "--client-send-timeout must be positive")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
