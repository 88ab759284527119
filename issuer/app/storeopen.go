package app

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/minter"
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
	db            *pgstore.Description // postgres only
	pg            *pgstore.Store       // postgres only: the replica machinery (lease, watch)
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
	desc, err := pgstore.Describe(cfg.PostgresURL)
	if err != nil {
		return openedStore{}, fmt.Errorf("--postgres-url: %w", err)
	}
	s, err := pgstore.Open(ctx, cfg.PostgresURL)
	if err != nil {
		return openedStore{}, fmt.Errorf("--postgres-url: %w", err)
	}
	return openedStore{Store: s, backend: "postgres", schemaVersion: s.SchemaVersion(), db: &desc, pg: s}, nil
}

// report logs the store and exposes its schema version on reg.
func (o openedStore) report(log zerolog.Logger, reg prometheus.Registerer) {
	ev := log.Info().Str("backend", o.backend).Int64("schema_version", o.schemaVersion)
	if o.db != nil {
		ev = ev.Str("database", o.db.Database).Str("host", o.db.Host).Str("transport", string(o.db.Transport))
		if o.db.Transport == pgstore.TransportUnverified && !isLoopback(net.JoinHostPort(o.db.Host, strconv.Itoa(int(o.db.Port)))) {
			log.Warn().Str("host", o.db.Host).Msg("the PostgreSQL connection is not verified TLS (sslmode is not verify-full or verify-ca): whoever is on the path can read and change the issuer's state; set sslmode=verify-full and sslrootcert")
		}
	}
	ev.Msg("store opened")
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "airlock_issuer_store_schema_version",
		Help:        "Schema version of the issuer's store, by backend (bbolt or postgres).",
		ConstLabels: prometheus.Labels{"backend": o.backend},
	})
	g.Set(float64(o.schemaVersion))
	reg.MustRegister(g)
}

// The embedded store group-commits the minter's token records.
var _ minter.Expecter = (*boltstore.Store)(nil)
