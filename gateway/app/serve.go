package app

import (
	"context"
	"net"
	"time"

	"golang.org/x/net/netutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/gateway/httpapi"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/lifecycle"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
)

// listeners are the gateway's bound sockets; http, api and health are nil
// when their address is empty.
type listeners struct {
	grpc, http, api, health net.Listener
}

// listen binds every configured address, or none.
func (g *gateway) listen() (l listeners, err error) {
	var b lifecycle.Listeners
	defer func() {
		if err != nil {
			b.CloseAll()
		}
	}()
	bind := b.Bind
	if l.grpc, err = bind("grpc-addr", g.cfg.GRPCAddr); err != nil {
		return l, err
	}
	l.grpc = g.perAddress(l.grpc)
	if g.cfg.MaxConns > 0 {
		l.grpc = netutil.LimitListener(l.grpc, g.cfg.MaxConns)
	}
	if l.http, err = bind("http-addr", g.cfg.HTTPAddr); err != nil {
		return l, err
	}
	if l.api, err = bind("api-http-addr", g.cfg.APIHTTPAddr); err != nil {
		return l, err
	}
	if l.api != nil {
		l.api = g.perAddress(l.api)
		if g.cfg.MaxConns > 0 {
			l.api = netutil.LimitListener(l.api, g.cfg.MaxConns)
		}
	}
	if l.health, err = bind("health-addr", g.cfg.HealthAddr); err != nil {
		return l, err
	}
	return l, nil
}

// perAddress caps the connections one client address holds on lis
// (--max-connections-per-address), before any authentication; the
// refusals are counted in airlock_gateway_connections_refused_total.
func (g *gateway) perAddress(lis net.Listener) net.Listener {
	cl := connlimit.New(lis, g.cfg.MaxConnsPerAddr)
	g.capped = append(g.capped, cl)
	return cl
}

// tasks are everything the gateway runs: its servers, the three watches
// of the issuer, the health watcher, and the start of the shutdown (health
// NOT_SERVING for everyone while draining). A new listener is one more task.
func (g *gateway) tasks(l listeners) []lifecycle.Task {
	grace := g.cfg.ShutdownGrace
	loop := func(name string, run func(context.Context)) lifecycle.Task {
		return lifecycle.Task{Name: name, Run: func(ctx context.Context) error { run(ctx); return nil }}
	}
	tasks := []lifecycle.Task{
		{Name: "grpc", Run: func(ctx context.Context) error { return rpcserver.Serve(ctx, g.grpc, l.grpc, grace) }},
		loop("keys", g.keys.Run),
		loop("health", g.watchHealth),
		lifecycle.OnStop("drain", func() {
			g.health.Shutdown() // later status changes are ignored
			close(g.stopping)
		}),
	}
	if g.issuer != nil {
		tasks = append(tasks, loop("revocations", g.revoked.Run), loop("models", g.models.Run))
	}
	if l.http != nil {
		tasks = append(tasks, lifecycle.HTTP("http", g.http, l.http, grace))
	}
	if l.api != nil {
		tasks = append(tasks, lifecycle.Task{Name: "api http", Run: func(ctx context.Context) error {
			return httpapi.Serve(ctx, l.api, g.api, httpapi.ServeOptions{TLS: g.apiTLS, Grace: grace,
				MaxStreamsPerConn: int(g.cfg.MaxConnStream), Logger: g.log.With().Str("component", "httpapi").Logger()})
		}})
	}
	if l.health != nil {
		tasks = append(tasks, lifecycle.Task{Name: "health listener", Run: func(ctx context.Context) error {
			return rpcserver.ServeHealth(ctx, l.health, g.health)
		}})
	}
	return tasks
}

// serve listens, runs every task until ctx is done or one fails, and
// returns once all of them have returned. Call it once.
func (g *gateway) serve(ctx context.Context, ready func(Addrs)) error {
	l, err := g.listen()
	if err != nil {
		return err
	}
	addrs := Addrs{GRPC: l.grpc.Addr().String()}
	if l.http != nil {
		addrs.HTTP = l.http.Addr().String()
	}
	if l.api != nil {
		addrs.API = l.api.Addr().String()
	}
	tasks := g.tasks(l)
	g.log.Info().Str("grpc_addr", addrs.GRPC).Str("http_addr", addrs.HTTP).Str("api_http_addr", addrs.API).Str("issuer", g.cfg.IssuerAddr).
		Str("expected_issuer", g.cfg.ExpectedIssuer).Msg("gateway started")
	if ready != nil {
		ready(addrs)
	}
	err = lifecycle.Run(ctx, tasks...)
	g.log.Info().Msg("gateway stopped")
	return err
}

// watchHealth flips the health service to SERVING only while the gateway
// can really serve: it holds a key set (before the first arrives it cannot
// verify anything) and the model configuration (without it, it cannot
// route).
func (g *gateway) watchHealth(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	serving := false
	for {
		ok := g.ready() == nil
		g.metrics.keysetRevision.Set(float64(g.keys.Revision()))
		if g.revoked != nil { // nil without an issuer: nothing is revoked, nothing goes stale
			g.metrics.revocationsAge.Set(g.revoked.Age().Seconds())
		}
		if ok {
			g.metrics.keysetAge.Set(g.keys.Age().Seconds())
		}
		if ok != serving {
			serving = ok
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			g.health.SetServingStatus("", st)
			g.health.SetServingStatus("airlock.gateway.v1.CompletionService", st)
			g.log.Info().Bool("serving", ok).Uint64("keyset_revision", g.keys.Revision()).Msg("health changed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
