package app

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// storeOpenTimeout bounds connecting to PostgreSQL and migrating it at
// start (waiting for another replica's migration included).
const storeOpenTimeout = 5 * time.Minute

// openedStore is the store the issuer runs on, with what /metrics and the
// start log say about it.
type openedStore struct {
	store.Store
	backend       string // "bbolt" or "postgres"
	schemaVersion int64
}

// openStore opens PostgreSQL when --postgres-url is set, else the embedded
// bbolt store in --data-dir.
func openStore(ctx context.Context, cfg Config) (openedStore, error) {
	if cfg.PostgresURL == "" {
		s, err := boltstore.Open(cfg.DataDir)
		if err != nil {
			return openedStore{}, err
		}
		return openedStore{Store: s, backend: "bbolt", schemaVersion: s.SchemaVersion()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeOpenTimeout)
	defer cancel()
	s, err := pgstore.Open(ctx, cfg.PostgresURL)
	if err != nil {
		return openedStore{}, fmt.Errorf("--postgres-url: %w", err)
	}
	return openedStore{Store: s, backend: "postgres", schemaVersion: s.SchemaVersion()}, nil
}

// report logs the store and exposes its schema version on reg.
func (o openedStore) report(log zerolog.Logger, reg prometheus.Registerer) {
	log.Info().Str("backend", o.backend).Int64("schema_version", o.schemaVersion).Msg("store opened")
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "airlock_issuer_store_schema_version",
		Help:        "Schema version of the issuer's store, by backend (bbolt or postgres).",
		ConstLabels: prometheus.Labels{"backend": o.backend},
	})
	g.Set(float64(o.schemaVersion))
	reg.MustRegister(g)
}
