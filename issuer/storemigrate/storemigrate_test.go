package storemigrate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

type fakeSource struct{ snap store.Snapshot }

func (f fakeSource) Export(context.Context) (store.Snapshot, error) { return f.snap, nil }

// fakeTarget keeps what it imports, passed through keep.
type fakeTarget struct {
	held      *store.Snapshot
	importErr error
	keep      func(store.Snapshot) store.Snapshot
}

func (f *fakeTarget) Import(_ context.Context, s store.Snapshot) error {
	if f.importErr != nil {
		return f.importErr
	}
	s = f.keep(s)
	f.held = &s
	return nil
}

func (f *fakeTarget) Export(context.Context) (store.Snapshot, error) { return *f.held, nil }

func TestCopy(t *testing.T) {
	ns := time.Date(2026, 1, 2, 3, 4, 5, 678, time.FixedZone("", 3600))
	src := store.Snapshot{
		InstanceID: "i", LastUserID: 2, Revisions: map[store.Domain]uint64{store.DomainKeys: 3},
		Users: []store.User{{ID: 2, Username: "u", CreateTime: ns}},
		PATs:  []store.PAT{{ID: "p", Hash: []byte{1}, UserID: 2, ExpireTime: ns}},
	}
	refused := errors.New("refused")
	tests := []struct {
		name    string
		target  *fakeTarget
		wantErr error
	}{
		{"a faithful copy at microsecond precision passes", &fakeTarget{keep: func(s store.Snapshot) store.Snapshot {
			s.Users = []store.User{{ID: 2, Username: "u", CreateTime: ns.UTC().Truncate(time.Microsecond)}}
			return s
		}}, nil},
		{"a target that loses a record fails the check", &fakeTarget{keep: func(s store.Snapshot) store.Snapshot {
			s.PATs = nil
			return s
		}}, ErrMismatch},
		{"a target that renumbers users fails the check", &fakeTarget{keep: func(s store.Snapshot) store.Snapshot {
			s.Users = []store.User{{ID: 1, Username: "u", CreateTime: ns}}
			return s
		}}, ErrMismatch},
		{"a target that refuses the import stops the copy", &fakeTarget{importErr: refused}, refused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Copy(context.Background(), fakeSource{src}, tc.target)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Copy = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestMainUsage(t *testing.T) {
	t.Setenv(EnvPostgresURL, "")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"no source", []string{"--to-postgres", "postgres:///x"}, 2, "--from-data-dir: required"},
		{"no target", []string{"--from-data-dir", "/tmp"}, 2, "--to-postgres (or env AIRLOCK_ISSUER_POSTGRES_URL): required"},
		{"stray argument", []string{"--from-data-dir", "/tmp", "--to-postgres", "postgres:///x", "extra"}, 2, `unexpected argument "extra"`},
		{"a data directory without a store is not copied as empty", []string{"--from-data-dir", "/nonexistent", "--to-postgres", "postgres:///x"}, 1, "--from-data-dir: stat /nonexistent/issuer.db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), tc.args, &out, &errOut)
			if code != tc.wantCode || !strings.Contains(errOut.String(), tc.wantMsg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), tc.wantCode, tc.wantMsg)
			}
		})
	}
}
