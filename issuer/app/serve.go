package app

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/lifecycle"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
)

// listeners are the issuer's bound sockets.
type listeners struct {
	grpc, http, health net.Listener // health is nil without --health-addr
}

// listen binds every configured address, or none.
func (s *issuer) listen() (l listeners, err error) {
	var b lifecycle.Listeners
	defer func() {
		if err != nil {
			b.CloseAll()
		}
	}()
	bind := b.Bind
	if l.grpc, err = bind("grpc-addr", s.cfg.GRPCAddr); err != nil {
		return l, err
	}
	l.grpc = connlimit.New(l.grpc, s.cfg.MaxConnsPerAddr)
	if l.http, err = bind("http-addr", s.cfg.HTTPAddr); err != nil {
		return l, err
	}
	if l.health, err = bind("health-addr", s.cfg.HealthAddr); err != nil {
		return l, err
	}
	if s.httpTLS != nil {
		l.http = tls.NewListener(l.http, s.httpTLS)
	} else if !isLoopback(s.cfg.HTTPAddr) {
		s.log.Warn().Str("addr", s.cfg.HTTPAddr).Msg("serving HTTP in plaintext on a non-loopback address")
	}
	return l, nil
}

// tasks are everything the issuer runs: its servers, the key rotator and
// the token pruner, and the start of the shutdown (health NOT_SERVING,
// watch streams ended so the stop does not wait on them).
func (s *issuer) tasks(l listeners) []lifecycle.Task {
	grace := s.cfg.ShutdownGrace
	tasks := []lifecycle.Task{
		{Name: "grpc", Run: func(ctx context.Context) error { return rpcserver.Serve(ctx, s.grpc, l.grpc, grace) }},
		lifecycle.HTTP("http", s.http, l.http, grace),
		{Name: "keys", Run: keys.NewRotator(s.keys, keys.RotatorConfig{Now: s.now, Logger: s.log, Gate: s.gate}).Run},
		{Name: "token pruning", Run: func(ctx context.Context) error { s.tokens.Run(ctx, time.Minute); return nil }},
		lifecycle.OnStop("drain", func() {
			s.health.Shutdown() // NOT_SERVING to health checkers while draining
			close(s.stopping)
		}),
	}
	if s.lease != nil {
		tasks = append(tasks,
			lifecycle.Task{Name: "key-rotation lease", Run: s.lease.Run},
			lifecycle.Task{Name: "follow other replicas", Run: s.follow},
			lifecycle.Task{Name: "database readiness", Run: func(ctx context.Context) error { return s.watchDatabase(ctx, s.storeUp) }})
	}
	if l.health != nil {
		tasks = append(tasks, lifecycle.Task{Name: "health", Run: func(ctx context.Context) error {
			return rpcserver.ServeHealth(ctx, l.health, s.health)
		}})
	}
	return tasks
}

// serve listens, runs every task until ctx is done or one fails, and
// returns once all of them have returned. Call it once.
func (s *issuer) serve(ctx context.Context, ready func(Addrs)) error {
	l, err := s.listen()
	if err != nil {
		return err
	}
	tasks := s.tasks(l)
	// Keys are loaded (build succeeded): the issuer can really serve.
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_SERVING)
	s.log.Info().Str("grpc_addr", l.grpc.Addr().String()).Str("http_addr", l.http.Addr().String()).
		Str("instance_id", s.instanceID).Str("issuer", s.cfg.IssuerURL).Msg("issuer serving")
	if ready != nil {
		ready(Addrs{GRPC: l.grpc.Addr().String(), HTTP: l.http.Addr().String()})
	}
	err = lifecycle.Run(ctx, tasks...)
	s.log.Info().Msg("issuer stopped")
	return err
}
