package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/bench/stats"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// runHA measures the issuer on PostgreSQL: MintToken throughput beside the
// embedded bbolt store (same alg, same client concurrency, interleaved), and
// how long a rotation made through one of 3 replicas takes to reach the
// WatchKeys streams of the other two. It starts its own throwaway
// PostgreSQL (internal/testkit/pgtest); without the server binaries the
// scenario fails (and the others still run).
func runHA(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "6 PostgreSQL and replicas"
	bin, err := pgtest.FindBinDir()
	if err != nil {
		return err
	}
	srv, err := pgtest.Start(bin)
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(logw, "   stopping PostgreSQL:", err)
		}
	}()
	url := srv.URL("postgres") // the server is this run's alone
	round := 1500 * time.Millisecond
	if o.Quick {
		round = 300 * time.Millisecond
	}

	// Minting: bbolt and PostgreSQL side by side.
	var table strings.Builder
	table.WriteString("| run | bbolt | PostgreSQL | ratio |\n|---|---|---|---|\n")
	bolt, err := startCluster(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir + "-bolt", NoGateway: true, NoStub: true, IssuerArgs: []string{"--key-alg", "ES256"}})
	if err != nil {
		return err
	}
	defer bolt.Close()
	pg, err := startCluster(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir + "-pg", NoGateway: true, NoStub: true,
		IssuerArgs: []string{"--key-alg", "ES256", "--postgres-url", url}})
	if err != nil {
		return err
	}
	defer pg.Close()
	boltMint, err := minter(ctx, bolt)
	if err != nil {
		return err
	}
	pgMint, err := minter(ctx, pg)
	if err != nil {
		return err
	}
	for _, m := range []func() error{boltMint, pgMint} {
		if _, err := throughput(ctx, 200*time.Millisecond, m); err != nil {
			return err
		}
	}
	var ratios []float64
	for i := range o.Runs {
		b, err := throughput(ctx, round, boltMint)
		if err != nil {
			return fmt.Errorf("bbolt MintToken: %w", err)
		}
		p, err := throughput(ctx, round, pgMint)
		if err != nil {
			return fmt.Errorf("PostgreSQL MintToken: %w", err)
		}
		ratio := 100 * p.rate() / b.rate()
		ratios = append(ratios, ratio)
		fmt.Fprintf(&table, "| %d | %.0f /s | %.0f /s | %.1f %% |\n", i+1, b.rate(), p.rate(), ratio)
		fmt.Fprintf(logw, "   run %d: bbolt %.0f/s, PostgreSQL %.0f/s (%.1f %%)\n", i+1, b.rate(), p.rate(), ratio)
	}
	r.add(Figure{section, "ES256 MintToken on PostgreSQL vs bbolt", stats.Of(ratios).Format("%.1f") + " %", "(reported)", Info})
	r.detail(section, "MintToken throughput of one issuer on the embedded bbolt store and one on a local PostgreSQL (unix socket, fsync off: the test server), %d client goroutines each, rounds of %v, interleaved. Each mint records its jti (bbolt: group commit; PostgreSQL: one INSERT) and takes from the user's rate bucket (bbolt: in memory; PostgreSQL: a row shared by replicas; the bench runs with no limit, so no row is touched).\n\n%s",
		mintWorkers, round, table.String())

	// Rotation propagation across replicas: two more issuers on pg's
	// database, each watched; RotateKeys through the first.
	var conns []issuerv1.KeyServiceClient
	for i := range 2 {
		grpcAddr, err := cluster.FreeAddr()
		if err != nil {
			return err
		}
		httpAddr, err := cluster.FreeAddr()
		if err != nil {
			return err
		}
		p, err := cluster.StartProc(fmt.Sprintf("issuer-replica-%d", i+2), []string{filepath.Join(o.BinDir, "issuer"), "--plaintext", "--log-level", "warn",
			"--postgres-url", url, "--kek-file", filepath.Join(pg.DataDir, "kek"), "--data-dir", filepath.Join(dir, fmt.Sprintf("replica-%d", i+2)),
			"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--issuer-url", pg.IssuerURL()}, filepath.Join(dir+"-pg", fmt.Sprintf("replica-%d.log", i+2)))
		if err != nil {
			return err
		}
		defer p.Stop(10 * time.Second)
		cc, err := cluster.Dial(grpcAddr)
		if err != nil {
			return err
		}
		defer cc.Close()
		kc := issuerv1.NewKeyServiceClient(cc)
		if err := waitKeys(ctx, kc); err != nil {
			return fmt.Errorf("replica %d: %w", i+2, err)
		}
		conns = append(conns, kc)
	}
	actx, err := pg.AsUser(ctx, "admin")
	if err != nil {
		return err
	}
	var table2 strings.Builder
	table2.WriteString("| run | slowest replica |\n|---|---|\n")
	var lat []float64
	for i := range o.Runs {
		d, err := rotationSpread(ctx, actx, issuerv1.NewKeyServiceClient(pg.IssuerConn()), conns)
		if err != nil {
			return err
		}
		lat = append(lat, float64(d.Microseconds())/1000)
		fmt.Fprintf(&table2, "| %d | %.1f ms |\n", i+1, float64(d.Microseconds())/1000)
		fmt.Fprintf(logw, "   rotation run %d: every replica's watchers had it after %v\n", i+1, d.Round(time.Millisecond))
	}
	r.add(Figure{section, "rotation through one of 3 replicas: in the other replicas' WatchKeys", stats.Of(lat).Format("%.1f") + " ms", "≤ 1000 ms", verdict(stats.Of(lat).Median <= 1000)})
	r.detail(section, "Rotation propagation: 3 issuer replicas on one PostgreSQL database; a WatchKeys stream open on each of the two others; RotateKeys through the first, timed until both streams delivered a key set with the new active key (trigger → NOTIFY → each replica reloads and publishes).\n\n%s", table2.String())
	return nil
}

// minter returns one MintToken call as the demo user of c.
func minter(ctx context.Context, c *cluster.Cluster) (func() error, error) {
	uctx, err := c.AsUser(ctx, "demo")
	if err != nil {
		return nil, err
	}
	tokens := issuerv1.NewTokenServiceClient(c.IssuerConn())
	return func() error { _, err := tokens.MintToken(uctx, &issuerv1.MintTokenRequest{}); return err }, nil
}

func waitKeys(ctx context.Context, kc issuerv1.KeyServiceClient) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := kc.GetKeys(ctx, &issuerv1.GetKeysRequest{})
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rotationSpread rotates through rot and returns how long until every
// watcher (one WatchKeys stream per replica) delivered the new active key.
func rotationSpread(ctx context.Context, actx context.Context, rot issuerv1.KeyServiceClient, replicas []issuerv1.KeyServiceClient) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type result struct {
		at  time.Time
		err error
	}
	want := make(chan string, len(replicas))
	done := make(chan result, len(replicas))
	ready := make(chan struct{}, len(replicas))
	for _, kc := range replicas {
		stream, err := kc.WatchKeys(wctx, &issuerv1.WatchKeysRequest{})
		if err != nil {
			return 0, err
		}
		go func() {
			if _, err := stream.Recv(); err != nil { // the current set
				done <- result{err: err}
				ready <- struct{}{}
				return
			}
			ready <- struct{}{}
			var kid string
			select {
			case kid = <-want:
			case <-wctx.Done():
				done <- result{err: wctx.Err()}
				return
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					done <- result{err: err}
					return
				}
				if activeOf(msg.GetKeySet()) == kid {
					done <- result{at: time.Now()}
					return
				}
			}
		}()
	}
	for range replicas {
		<-ready
	}
	start := time.Now()
	resp, err := rot.RotateKeys(actx, &issuerv1.RotateKeysRequest{})
	if err != nil {
		return 0, fmt.Errorf("RotateKeys: %w", err)
	}
	kid := activeOf(resp.GetKeySet())
	for range replicas {
		want <- kid
	}
	var slowest time.Duration
	for range replicas {
		res := <-done
		if res.err != nil {
			return 0, res.err
		}
		slowest = max(slowest, res.at.Sub(start))
	}
	if kid == "" {
		return 0, errors.New("RotateKeys returned no active key")
	}
	return slowest, nil
}

func activeOf(ks *issuerv1.KeySet) string {
	for _, k := range ks.GetKeys() {
		if k.GetState() == issuerv1.KeyState_KEY_STATE_ACTIVE {
			return k.GetKid()
		}
	}
	return ""
}
