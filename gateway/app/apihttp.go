package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	"github.com/airlock-dev/airlock/gateway/httpapi/openai"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// apiHTTPTask builds the HTTP API (--api-http-addr) and returns the task
// that binds its listener and serves it until ctx ends: the OpenAI-compatible dialect on
// the same verifier and completion core as gRPC, with the same TLS, body
// bound (--max-recv-bytes), connection and per-connection stream limits
// (--max-connections, --max-streams-per-conn) and slow-client bound
// (--client-send-timeout). With the flag empty the task does nothing.
func apiHTTPTask(cfg Config, v *auth.Verifier, svc *completion.Service, reg prometheus.Registerer, log zerolog.Logger) (func(context.Context) error, error) {
	if cfg.APIHTTPAddr == "" {
		return func(context.Context) error { return nil }, nil
	}
	oai, err := openai.New(openai.Config{Completer: svc, WriteTimeout: cfg.ClientSendTimeout})
	if err != nil {
		return nil, err
	}
	alog := log.With().Str("component", "httpapi").Logger()
	h, err := httpapi.NewHandler(httpapi.Config{
		Verifier:     v,
		Dialects:     []httpapi.Dialect{oai},
		MaxBodyBytes: int64(cfg.MaxRecvBytes),
		Logger:       alog,
		Registerer:   reg,
	})
	if err != nil {
		return nil, err
	}
	var tc *tls.Config
	if cfg.Plaintext {
		log.Warn().Str("addr", cfg.APIHTTPAddr).Msg("serving the HTTP API without TLS (--plaintext): tokens cross the network unencrypted; use only for local development")
	} else if tc, err = tlsconfig.Server(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		lis, err := net.Listen("tcp", cfg.APIHTTPAddr)
		if err != nil {
			return fmt.Errorf("--api-http-addr: %w", err)
		}
		if cfg.MaxConns > 0 {
			lis = netutil.LimitListener(lis, cfg.MaxConns)
		}
		return httpapi.Serve(ctx, lis, h, httpapi.ServeOptions{TLS: tc, Grace: cfg.ShutdownGrace,
			MaxStreamsPerConn: int(cfg.MaxConnStream), Logger: alog})
	}, nil
}
