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
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/storemigrate"
	"github.com/airlock-dev/airlock/pkg/debugpprof"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/heapfloor"
	"github.com/airlock-dev/airlock/pkg/telemetry"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Main runs the issuer command with args (without the program name),
// logging to stderr, and returns the process exit code: 0 after a clean
// shutdown (or -help), 1 on a runtime failure, 2 on bad usage.
// `issuer healthcheck [--addr A]` probes a running issuer instead,
// `issuer migrate-store` copies a store, and `issuer issue-pat` issues a
// personal access token straight into the store (issuePATMain).
func Main(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthprobe.Main("issuer", "127.0.0.1:9440", args[1:], stderr)
	}
	if len(args) > 0 && args[0] == "issue-pat" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return issuePATMain(ctx, args[1:], time.Now(), os.Stdout, stderr)
	}
	if len(args) > 0 && args[0] == "migrate-store" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return storemigrate.Main(ctx, args[1:], os.Stdout, stderr)
	}
	cfg, err := ParseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "issuer:", err)
		return 2
	}
	log := NewLogger(stderr, cfg.LogLevel)
	defer heapfloor.Start(cfg.GCHeapFloorBytes)() // the process's collector: here, not in Run
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

// Run runs the issuer until ctx is done, then shuts down gracefully, and
// returns once everything it started has stopped. ready, if non-nil, is
// called with the bound addresses once the issuer is serving. The clock is
// time.Now; key rotation is checked every 30 s.
func Run(ctx context.Context, cfg Config, log zerolog.Logger, ready func(Addrs)) error {
	return run(ctx, cfg, log, time.Now, ready)
}

func run(ctx context.Context, cfg Config, log zerolog.Logger, now func() time.Time, ready func(Addrs)) (err error) {
	if err := cfg.Validate(); err != nil {
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
	s, err := build(ctx, cfg, log, now)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}()
	return s.serve(ctx, ready)
}
