package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// bootstrapPATLifetime is long: the bootstrap tokens are the operator's way
// in. They can be revoked and replaced through UserService.
const bootstrapPATLifetime = 365 * 24 * time.Hour

// bootstrapClaim names the store record that decides which start
// bootstraps: the first to store its random id there does, once.
const bootstrapClaim = "bootstrap-claim"

// bootstrap creates admin, demo and gateway with PATs written to
// dataDir/credentials, only when the store has no users (first start). The
// three are created whatever --max-users says: they are the way in.
//
// Several replicas sharing one database may start at once: the one whose
// claim the store keeps (store.InitSecret: the first writer wins; the value
// is a random id, not a secret) creates all three users and writes the
// credentials into its own data dir; the others create nothing. So there is
// one admin, one demo and one gateway user, and their tokens are all in the
// winner's credentials directory.
func bootstrap(ctx context.Context, st store.Store, dataDir string, now time.Time) (bool, error) {
	users, err := st.ListUsers(ctx)
	if err != nil || len(users) > 0 {
		return false, err
	}
	claim := []byte(uuid.NewString())
	won, err := st.InitSecret(ctx, bootstrapClaim, claim)
	if err != nil {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	if !bytes.Equal(won, claim) {
		return false, nil // another start bootstraps (or did)
	}
	all := make([]string, len(feature.All))
	for i, f := range feature.All {
		all[i] = string(f)
	}
	dir := filepath.Join(dataDir, "credentials")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // G302: a directory needs x for its owner
		return false, fmt.Errorf("bootstrap: %w", err)
	}
	for _, u := range []store.User{
		{Username: "admin", Role: store.RoleAdmin},
		{Username: "demo", Role: store.RoleUser, Features: all},
		{Username: "gateway", Role: store.RoleGateway},
	} {
		u.CreateTime = now
		created, err := st.CreateUser(ctx, u, 0)
		if err != nil {
			return false, fmt.Errorf("bootstrap user %s: %w", u.Username, err)
		}
		_, secret, err := pat.Issue(ctx, st, created, now, now.Add(bootstrapPATLifetime))
		if err != nil {
			return false, fmt.Errorf("bootstrap user %s: %w", u.Username, err)
		}
		if err := writeSecret(filepath.Join(dir, u.Username+".token"), secret); err != nil {
			return false, fmt.Errorf("bootstrap user %s: %w", u.Username, err)
		}
	}
	return true, nil
}

// writeSecret writes a 0600 file durably and atomically.
func writeSecret(path, secret string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
