package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	"github.com/airlock-dev/airlock/pkg/flagenv"
)

// maxIssuedPATLifetime bounds --ttl of issue-pat: a bootstrap token's.
const maxIssuedPATLifetime = bootstrapPATLifetime

// issuePATMain runs `issuer issue-pat --user NAME [--ttl D] [server
// settings]`: the way back in when no administrator token is at hand (the
// bootstrap credentials were lost with a replica's emptyDir, or revoked). It
// opens the store the issuer's own settings name (flags, AIRLOCK_ISSUER_*
// variables or --config, as the server reads them: run it where the server
// runs, e.g. `kubectl exec`), issues a new personal access token for the
// existing user NAME, and writes it to stdout, alone on one line; what it
// did (the PAT's id and expiry, never the token) goes to stderr. Exit codes
// as Main's.
func issuePATMain(ctx context.Context, args []string, now time.Time, stdout, stderr io.Writer) int {
	var c Config
	fs := flag.NewFlagSet("issuer issue-pat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	user := fs.String("user", "", "the existing user the token is for (e.g. admin)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token (at most 8760h)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: issuer issue-pat --user NAME [--ttl 24h] [the issuer's store settings: --data-dir, --postgres-url, or their variables]")
		fmt.Fprintln(stderr, "Issues a personal access token for an existing user straight into the store, and prints it.")
	}
	err := flagenv.Parse(fs, EnvPrefix, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "issuer issue-pat: "+format+"\n", a...)
		return 2
	}
	switch {
	case err != nil:
		return usage("%v", err)
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case *user == "":
		return usage("--user: required")
	case *ttl <= 0 || *ttl > maxIssuedPATLifetime:
		return usage("--ttl %v: must be positive and at most %v", *ttl, maxIssuedPATLifetime)
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "issuer issue-pat:", err)
		return 1
	}
	st, err := openStoreForTool(ctx, c)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			fmt.Fprintln(stderr, "issuer issue-pat: closing the store:", err)
		}
	}()
	u, err := st.GetUser(ctx, *user)
	if errors.Is(err, store.ErrNotFound) {
		return fail(fmt.Errorf("no user %q in the store (bootstrap creates admin, demo and gateway)", *user))
	}
	if err != nil {
		return fail(err)
	}
	p, secret, err := pat.Issue(ctx, st, u, now, now.Add(*ttl))
	if err != nil {
		return fail(err)
	}
	if _, err := fmt.Fprintln(stdout, secret); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "issued personal access token %s for user %s (%s), expiring %s; revoke it when done: airlockctl pat revoke --id %s\n",
		p.ID, u.Username, authn.RoleName(u.Role), p.ExpireTime.UTC().Format(time.RFC3339), p.ID)
	return 0
}

// openStoreForTool opens the store a subcommand works on: the database, or
// the embedded store only if it exists already and no running issuer holds
// it (boltstore.OpenExisting).
func openStoreForTool(ctx context.Context, c Config) (store.Store, error) {
	if c.PostgresURL != "" {
		o, err := openStore(ctx, c)
		return o.Store, err
	}
	s, err := boltstore.OpenExisting(c.DataDir)
	switch {
	case errors.Is(err, boltstore.ErrNoStore):
		return nil, fmt.Errorf("no embedded store at %s (set --data-dir, or --postgres-url for a database): %w",
			filepath.Join(c.DataDir, boltstore.FileName), err)
	case errors.Is(err, boltstore.ErrInUse):
		return nil, fmt.Errorf("the embedded store in %s is held by a running issuer: stop it first (one process at a time may open it)", c.DataDir)
	case err != nil:
		return nil, err
	}
	return s, nil
}
