package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// issuePAT runs `issuer issue-pat args...` and returns its stdout, stderr
// and exit code.
func issuePAT(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "issuer"), append([]string{"issue-pat"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// listUsersWith calls ListUsers (administrators only) with the PAT p.
func listUsersWith(t *testing.T, addr, p string) error {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+p)
	_, err := issuerv1.NewUserServiceClient(dial(t, addr)).ListUsers(ctx, &issuerv1.ListUsersRequest{})
	return err
}

// With the bootstrap credentials gone, `issuer issue-pat` run with the
// server's own store settings gives an administrator token back: on
// PostgreSQL while the issuer runs (every replica reads PATs from the
// database), on the embedded store once the issuer is stopped.
func TestIssuePATRecoversAdminAccess(t *testing.T) {
	t.Run("postgres, issuer running", func(t *testing.T) {
		url := pgtest.Shared(t).NewDatabase(t)
		c := startCluster(t, cluster.Config{IssuerArgs: []string{"--postgres-url", url}})
		// The variable, as a pod's environment has it.
		cmd := exec.Command(filepath.Join(binDir, "issuer"), "issue-pat", "--user", "admin", "--ttl", "1h")
		cmd.Env = append(cmd.Environ(), "AIRLOCK_ISSUER_POSTGRES_URL="+url)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("issue-pat: %v\n%s", err, errb.String())
		}
		p := strings.TrimSpace(out.String())
		if !strings.HasPrefix(p, "alpat_") || strings.Count(out.String(), "\n") != 1 {
			t.Fatalf("stdout %q: want the PAT alone on one line", out.String())
		}
		if !strings.Contains(errb.String(), "for user admin (ROLE_ADMIN)") || strings.Contains(errb.String(), p) {
			t.Fatalf("stderr: want what was done, without the token:\n%s", errb.String())
		}
		if err := listUsersWith(t, c.IssuerGRPC, p); err != nil {
			t.Fatalf("ListUsers with the issued PAT on the running issuer: %v", err)
		}
	})

	t.Run("embedded store", func(t *testing.T) {
		c := startCluster(t, cluster.Config{NoGateway: true, NoStub: true})
		// One process at a time opens the embedded store: refused, clearly.
		_, stderr, code := issuePAT(t, "--data-dir", c.DataDir, "--user", "admin")
		if code != 1 || !strings.Contains(stderr, "held by a running issuer") {
			t.Fatalf("issue-pat beside a running issuer: exit %d\n%s", code, stderr)
		}
		c.Issuer.Stop(10 * time.Second)
		if _, stderr, code := issuePAT(t, "--data-dir", c.DataDir, "--user", "nobody"); code != 1 || !strings.Contains(stderr, `no user "nobody" in the store`) {
			t.Fatalf("issue-pat for an unknown user: exit %d\n%s", code, stderr)
		}
		out, stderr, code := issuePAT(t, "--data-dir", c.DataDir, "--user", "admin", "--ttl", "2h")
		if code != 0 {
			t.Fatalf("issue-pat: exit %d\n%s", code, stderr)
		}
		if err := c.RestartIssuer(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := listUsersWith(t, c.IssuerGRPC, strings.TrimSpace(out)); err != nil {
			t.Fatalf("ListUsers with the issued PAT: %v", err)
		}
		if err := listUsersWith(t, c.IssuerGRPC, "alpat_"+strings.Repeat("A", 43)); err == nil {
			t.Fatal("an unknown PAT was accepted: the check above proves nothing")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		empty := t.TempDir()
		for _, tc := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"no user", []string{"--data-dir", empty}, 2, "--user: required"},
			{"ttl too long", []string{"--data-dir", empty, "--user", "admin", "--ttl", "9000h"}, 2, "--ttl 9000h0m0s: must be positive and at most 8760h0m0s"},
			{"an argument", []string{"--user", "admin", "extra"}, 2, `unexpected argument "extra"`},
			{"no store there", []string{"--data-dir", empty, "--user", "admin"}, 1, "no embedded store at " + filepath.Join(empty, "issuer.db")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, stderr, code := issuePAT(t, tc.args...)
				if code != tc.code || !strings.Contains(stderr, tc.want) || out != "" {
					t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit %d and %q", code, out, stderr, tc.code, tc.want)
				}
			})
		}
		if matches, _ := filepath.Glob(filepath.Join(empty, "*")); len(matches) != 0 {
			t.Fatalf("issue-pat created %v in a directory without a store", matches)
		}
	})
}
