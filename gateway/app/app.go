// Package app wires the gateway: it loads the configuration, connects to the
// issuer (keys, revocations, model configuration), builds the token verifier
// and the completion service on one gRPC server, serves metrics and health
// over HTTP, and shuts down gracefully.
//
// The shape is the issuer's: Main parses flags and handles signals; Run is
// build (everything but listeners) then serve (every long-lived task under
// lifecycle.Run, returning once all have returned).
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/heapfloor"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Main runs the gateway command with args (without the program name),
// logging to stderr, and returns the process exit code: 0 after a clean
// shutdown (or -help), 1 on a runtime failure, 2 on bad usage.
// `gateway healthcheck [--addr A]` probes a running gateway instead.
func Main(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthprobe.Main("gateway", "127.0.0.1:9450", args[1:], stderr)
	}
	cfg, err := ParseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	log := NewLogger(stderr, cfg.LogLevel)
	defer heapfloor.Start(cfg.GCHeapFloorBytes)() // the process's collector: here, not in Run
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, cfg, log, nil); err != nil {
		log.Error().Err(err).Msg("gateway failed")
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
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "gateway").Logger()
}

// Addrs are the addresses Run listens on (useful with port 0).
type Addrs struct {
	GRPC string
	HTTP string // empty when --http-addr is
	API  string // the HTTP API; empty when --api-http-addr is
}

// Run runs the gateway until ctx is done, then shuts down gracefully, and
// returns once everything it started has stopped. ready, if non-nil, is
// called with the bound addresses once the gateway is listening (it turns
// SERVING on its health service only once it holds keys and models).
func Run(ctx context.Context, cfg Config, log zerolog.Logger, ready func(Addrs)) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	shutdownTracing, err := telemetry.Setup(ctx, "airlock-gateway", cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = shutdownTracing(sctx)
	}()
	g, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := g.close(); err == nil {
			err = cerr
		}
	}()
	return g.serve(ctx, ready)
}

// issuerBackoff redials a lost issuer promptly: a restarted issuer is
// reachable again within about a second, and the watches (which wait for
// the connection) are back with it. Jitter spreads a fleet's redials.
var issuerBackoff = grpc.ConnectParams{
	Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 800 * time.Millisecond},
	MinConnectTimeout: 5 * time.Second,
}

// dialIssuer opens the connection the gateway uses for everything it reads
// from the issuer, authenticated with its personal access token or, with
// mutual TLS, its client certificate. Nothing is dialled until first use.
func dialIssuer(cfg Config, log zerolog.Logger, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
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
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc), rpcserver.KeepaliveDialOption(), grpc.WithConnectParams(issuerBackoff)}
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
	target, topts, err := client.IssuerTarget(cfg.IssuerAddr)
	if err != nil {
		return nil, fmt.Errorf("--issuer-addr: %w", err)
	}
	opts = append(opts, topts...)
	return grpc.NewClient(target, append(opts, extra...)...)
}
