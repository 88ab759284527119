package app

import (
	"context"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/issuer/follow"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// rotationLeaseName is the lease whose holder advances the key lifecycle.
const rotationLeaseName = "key-rotation"

// newRotationLease returns the key-rotation lease of this replica on pg,
// with a log line and the airlock_issuer_key_lease_held gauge on change.
func newRotationLease(pg *pgstore.Store, log zerolog.Logger, reg prometheus.Registerer) *pgstore.Lease {
	host, _ := os.Hostname()
	holder := host + "/" + uuid.NewString() // unique per process, readable in the table
	held := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "airlock_issuer_key_lease_held",
		Help: "1 while this issuer replica holds the key-rotation lease (advances the key lifecycle), else 0.",
	})
	reg.MustRegister(held)
	return pg.NewLease(pgstore.LeaseConfig{
		Name: rotationLeaseName, Holder: holder,
		OnChange: func(h bool) {
			if h {
				held.Set(1)
				log.Info().Str("holder", holder).Msg("key-rotation lease acquired: this replica advances the key lifecycle")
			} else {
				held.Set(0)
				log.Info().Str("holder", holder).Msg("key-rotation lease lost or released")
			}
		},
	})
}

// followResyncEvery bounds how long a lost notification leaves a replica
// behind the others.
const followResyncEvery = 10 * time.Second

// follow keeps this replica's key set, model configuration and revocations
// in step with the changes every replica commits to the shared database.
func (s *issuer) follow(ctx context.Context) error {
	pg := s.store.pg
	return follow.Run(ctx, follow.Config{
		Logger: s.log,
		Targets: map[store.Domain]follow.Target{
			store.DomainKeys: {Reload: s.keys.Reload, Revision: func() uint64 {
				if ks := s.keys.KeySet(); ks != nil {
					return ks.Revision
				}
				return 0
			}},
			store.DomainModels:      {Reload: s.models.Reload, Revision: s.models.Revision},
			store.DomainRevocations: {Reload: s.tokens.Reload, Revision: s.tokens.Revision},
		},
		Watch: func(ctx context.Context, fn func(store.Domain, uint64)) error {
			return pg.WatchRevisions(ctx, pgstore.WatchOptions{
				ResyncEvery: followResyncEvery,
				OnDisconnect: func(err error) {
					s.log.Warn().Err(err).Msg("listening for other replicas' changes: connection lost; reconnecting")
				},
			}, func(c pgstore.Change) { fn(c.Domain, c.Revision) })
		},
	})
}

// ReadinessService is the health service name that reports whether this
// issuer can serve everything now: on PostgreSQL, NOT_SERVING while the
// database does not answer. The overall health ("") stays SERVING then (a
// liveness probe must not restart replicas for a database outage), so
// readiness probes ask for this name.
const ReadinessService = "readiness"

// Database readiness checks.
const (
	readinessEvery   = 2 * time.Second
	readinessTimeout = time.Second
)

// watchDatabase sets ReadinessService and airlock_issuer_store_up from a
// ping every readinessEvery until ctx is done.
func (s *issuer) watchDatabase(ctx context.Context, up prometheus.Gauge) error {
	t := time.NewTicker(readinessEvery)
	defer t.Stop()
	was := true
	for {
		err := s.store.pg.Ping(ctx, readinessTimeout)
		if ctx.Err() != nil {
			return nil
		}
		ok := err == nil
		if ok != was {
			if ok {
				s.log.Info().Msg("database reachable again: ready")
			} else {
				s.log.Warn().Err(err).Msg("database unreachable: not ready; calls that need it fail with Unavailable")
			}
			was = ok
		}
		if ok {
			up.Set(1)
			s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_SERVING)
		} else {
			up.Set(0)
			s.health.SetServingStatus(ReadinessService, healthpb.HealthCheckResponse_NOT_SERVING)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
