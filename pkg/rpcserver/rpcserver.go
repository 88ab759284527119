// Package rpcserver builds the gRPC server both Airlock services run: one
// interceptor chain (metrics → caller's first interceptors → request id and
// call log (calllog.go) → auth → caller's after-auth interceptors → drain of long-lived
// streams → recovery, unary and stream), the standard health service,
// server reflection, and graceful shutdown.
package rpcserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Options configure New.
type Options struct {
	// Logger receives one line per finished call and every recovered panic.
	Logger zerolog.Logger
	// Auth authenticates calls; nil disables authentication. It returns a
	// child context carrying the caller's identity, or a status error.
	Auth auth.AuthFunc
	// Public reports methods (full names, /pkg.Service/Method) that skip
	// Auth. Health and reflection are always public.
	Public func(fullMethod string) bool
	// UnaryFirst and StreamFirst run before logging (metrics, tracing).
	UnaryFirst  []grpc.UnaryServerInterceptor
	StreamFirst []grpc.StreamServerInterceptor
	// UnaryAfterAuth and StreamAfterAuth run after authentication, so they
	// see the caller's identity (per-caller limits).
	UnaryAfterAuth  []grpc.UnaryServerInterceptor
	StreamAfterAuth []grpc.StreamServerInterceptor
	// Stopping is closed when shutdown begins. Streams that do not end by
	// themselves (the health service's Watch, and LongLived methods) then
	// end at once with Unavailable, and new ones are refused the same way,
	// so clients reconnect and a graceful stop waits only for calls that
	// finish. Other streams (a completion in flight) keep the grace period.
	// nil: never.
	Stopping <-chan struct{}
	// LongLived reports the service's own watch methods (full names); see
	// Stopping.
	LongLived func(fullMethod string) bool
	// ServerOptions are appended (TLS credentials, size limits, keepalive).
	ServerOptions []grpc.ServerOption
	// Registerer, if set, receives the standard gRPC server metrics
	// (grpc_server_started_total, grpc_server_handled_total{grpc_code},
	// grpc_server_handling_seconds, grpc_server_msg_{received,sent}_total),
	// recorded outermost; a stream's messages are counted once, when it
	// ends (metrics.go).
	Registerer prometheus.Registerer
	// RefusalSampler samples the finished-call lines of calls refused for
	// the caller's fault (see refusal), so a flood of bad calls costs
	// bounded disk; the exact counts stay in grpc_server_handled_total.
	// Nil means DefaultRefusalSampler().
	RefusalSampler zerolog.Sampler
}

// DefaultRefusalSampler logs the first 20 refusals of each second, then one
// in 1,000.
func DefaultRefusalSampler() zerolog.Sampler {
	return &zerolog.BurstSampler{Burst: 20, Period: time.Second, NextSampler: &zerolog.BasicSampler{N: 1000}}
}

// PreAuthOptions bound what a client can hold before any interceptor
// (authentication) runs: the connection's handshake (TLS and the HTTP/2
// preface and settings) must finish within handshake, or the connection
// is closed; and a call's header list stays under maxHeaderBytes, or the
// call is refused by the transport. Bound connections per address with
// connlimit at the listener.
func PreAuthOptions(handshake time.Duration, maxHeaderBytes uint32) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ConnectionTimeout(handshake), grpc.MaxHeaderListSize(maxHeaderBytes)}
}

// New returns a gRPC server with the interceptor chain, the health service
// and reflection registered. Health starts NOT_SERVING for the overall
// service (""): call SetServingStatus once the service can really serve.
func New(o Options) (*grpc.Server, *health.Server) {
	sampler := o.RefusalSampler
	if sampler == nil {
		sampler = DefaultRefusalSampler()
	}
	log := &callLog{all: o.Logger, refusals: o.Logger.Sample(sampler)}
	rec := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		o.Logger.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("recovered from panic in handler")
		return status.Error(codes.Internal, "internal error")
	})
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	if o.Registerer != nil {
		m := newServerMetrics()
		o.Registerer.MustRegister(m)
		unary = append(unary, m.unary)
		stream = append(stream, m.stream)
	}
	unary = append(unary, o.UnaryFirst...)
	stream = append(stream, o.StreamFirst...)
	unary = append(unary, log.unary)
	stream = append(stream, log.stream)
	if o.Auth != nil {
		needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
			m := c.FullMethod()
			return !alwaysPublic(m) && (o.Public == nil || !o.Public(m))
		})
		unary = append(unary, selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(o.Auth), needsAuth))
		stream = append(stream, selector.StreamServerInterceptor(auth.StreamServerInterceptor(o.Auth), needsAuth))
	}
	unary = append(unary, o.UnaryAfterAuth...)
	stream = append(stream, o.StreamAfterAuth...)
	if o.Stopping != nil {
		stream = append(stream, drainStream(func(m string) bool {
			return m == healthpb.Health_Watch_FullMethodName || (o.LongLived != nil && o.LongLived(m))
		}, o.Stopping))
	}
	unary = append(unary, recovery.UnaryServerInterceptor(rec))
	stream = append(stream, recovery.StreamServerInterceptor(rec))

	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}, o.ServerOptions...)
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

func alwaysPublic(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// Serve serves srv on lis until ctx is done, then stops gracefully: no new
// calls are accepted, running ones get up to grace to finish, and the rest
// are cancelled. It returns nil after a shutdown caused by ctx.
func Serve(ctx context.Context, srv *grpc.Server, lis net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// ServeHealth serves only the standard health service hs, without TLS, on
// lis until ctx is done. It exists for probes that cannot present a client
// certificate (the kubelet's gRPC probe) when the main port requires mutual
// TLS: it answers SERVING or NOT_SERVING and nothing else.
func ServeHealth(ctx context.Context, lis net.Listener, hs healthpb.HealthServer) error {
	srv := grpc.NewServer(grpc.StreamInterceptor(drainStream(func(m string) bool {
		return m == healthpb.Health_Watch_FullMethodName // ends at once when ctx does
	}, ctx.Done())))
	healthpb.RegisterHealthServer(srv, hs)
	return Serve(ctx, srv, lis, time.Second)
}
