// Package storemigrate is `issuer migrate-store`: it copies the embedded
// bbolt store of a single-node installation into an empty PostgreSQL
// database, so the installation can grow to several replicas without
// re-issuing personal access tokens, signing keys or model configuration.
//
// What is copied is the store as it is: PAT hashes, sealed private keys and
// sealed model API keys (the key-encryption key is never read, so the
// replicas must be given the same one), user ids, and the revisions, so
// gateways that watched the old issuer see the new one continue from where
// it stopped rather than start over.
package storemigrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
)

// EnvPostgresURL is read when --to-postgres is not given: the variable the
// issuer itself takes its --postgres-url from.
const EnvPostgresURL = "AIRLOCK_ISSUER_POSTGRES_URL"

// Source is a store that can export its whole state.
type Source interface {
	Export(ctx context.Context) (store.Snapshot, error)
}

// Target is a store that can import a whole state into itself while empty,
// and export it again for verification.
type Target interface {
	Import(ctx context.Context, snap store.Snapshot) error
	Export(ctx context.Context) (store.Snapshot, error)
}

// ErrMismatch: the target, read back after the import, differs from what
// was exported from the source.
var ErrMismatch = errors.New("the copy read back differs from the source")

// Copy exports from, imports into to, reads to back and compares. It
// returns the snapshot copied. Errors: the source's or target's (a
// non-empty target refuses the import), or ErrMismatch.
func Copy(ctx context.Context, from Source, to Target) (store.Snapshot, error) {
	snap, err := from.Export(ctx)
	if err != nil {
		return store.Snapshot{}, err
	}
	if err := to.Import(ctx, snap); err != nil {
		return store.Snapshot{}, err
	}
	back, err := to.Export(ctx)
	if err != nil {
		return store.Snapshot{}, err
	}
	if !reflect.DeepEqual(normalize(back), normalize(snap)) {
		return store.Snapshot{}, ErrMismatch
	}
	return snap, nil
}

// normalize rounds every time to the microsecond in UTC (what PostgreSQL
// keeps) so that a faithful copy compares equal.
func normalize(s store.Snapshot) store.Snapshot {
	t := func(v time.Time) time.Time {
		if v.IsZero() {
			return time.Time{}
		}
		return v.UTC().Truncate(time.Microsecond)
	}
	out := s
	out.Users = append([]store.User(nil), s.Users...)
	for i := range out.Users {
		out.Users[i].CreateTime = t(out.Users[i].CreateTime)
	}
	out.PATs = append([]store.PAT(nil), s.PATs...)
	for i := range out.PATs {
		p := &out.PATs[i]
		p.CreateTime, p.ExpireTime, p.RevokeTime = t(p.CreateTime), t(p.ExpireTime), t(p.RevokeTime)
	}
	out.Keys = append([]store.SigningKey(nil), s.Keys...)
	for i := range out.Keys {
		k := &out.Keys[i]
		k.CreateTime, k.ActivateTime, k.RetireTime, k.ExpireTime = t(k.CreateTime), t(k.ActivateTime), t(k.RetireTime), t(k.ExpireTime)
	}
	out.Tokens = append([]store.IssuedToken(nil), s.Tokens...)
	for i := range out.Tokens {
		out.Tokens[i].ExpireTime = t(out.Tokens[i].ExpireTime)
	}
	out.Revocations = append([]store.Revocation(nil), s.Revocations...)
	for i := range out.Revocations {
		r := &out.Revocations[i]
		r.ExpireTime, r.RevokeTime = t(r.ExpireTime), t(r.RevokeTime)
	}
	out.Models = append([]store.Model(nil), s.Models...)
	for i := range out.Models {
		m := &out.Models[i]
		m.CreateTime, m.UpdateTime = t(m.CreateTime), t(m.UpdateTime)
	}
	return out
}

// Main runs `issuer migrate-store` with args (after the subcommand) and
// returns the exit code: 0 copied, 1 failed, 2 bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("issuer migrate-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from-data-dir", "", "data directory of the stopped single-node issuer (holds "+boltstore.FileName+")")
	to := fs.String("to-postgres", "", "PostgreSQL database to fill, which must hold no issuer state: a postgres:// URL or key=value DSN (default: env "+EnvPostgresURL+")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: issuer migrate-store --from-data-dir DIR --to-postgres URL")
		fmt.Fprintln(stderr, "Copies the embedded store into an empty PostgreSQL database. Stop the issuer first; start the new replicas with --postgres-url and the same key-encryption key.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *to == "" {
		*to = os.Getenv(EnvPostgresURL)
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "issuer migrate-store: unexpected argument %q\n", fs.Arg(0))
		return 2
	case *from == "":
		fmt.Fprintln(stderr, "issuer migrate-store: --from-data-dir: required")
		return 2
	case *to == "":
		fmt.Fprintln(stderr, "issuer migrate-store: --to-postgres (or env "+EnvPostgresURL+"): required")
		return 2
	}
	if err := run(ctx, *from, *to, stdout); err != nil {
		fmt.Fprintln(stderr, "issuer migrate-store:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, dir, url string, stdout io.Writer) error {
	src, err := boltstore.OpenExisting(dir)
	if errors.Is(err, boltstore.ErrNoStore) {
		return fmt.Errorf("--from-data-dir: %w", err)
	}
	if err != nil {
		return fmt.Errorf("--from-data-dir (is the issuer still running? stop it first): %w", err)
	}
	defer func() { _ = src.Close() }() // read only: the copy is checked by reading dst back
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	dst, err := pgstore.Open(ctx, url)
	if err != nil {
		return fmt.Errorf("--to-postgres: %w", err)
	}
	defer func() { _ = dst.Close() }() // every write committed (and read back) before this
	snap, err := Copy(ctx, src, dst)
	if errors.Is(err, pgstore.ErrNotEmpty) {
		return fmt.Errorf("--to-postgres: %w: migrate-store only fills an empty database", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d users, %d personal access tokens, %d signing keys, %d minted tokens, %d revocations, %d models, %d feature settings (revisions: keys %d, models %d, revocations %d; schema %d)\n",
		len(snap.Users), len(snap.PATs), len(snap.Keys), len(snap.Tokens), len(snap.Revocations), len(snap.Models), len(snap.Settings),
		snap.Revisions[store.DomainKeys], snap.Revisions[store.DomainModels], snap.Revisions[store.DomainRevocations], dst.SchemaVersion())
	return nil
}
