package minter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/store"
)

// fakeSigner returns a fixed token or an error.
type fakeSigner struct {
	err     error
	payload []byte
}

func (f *fakeSigner) Sign(p []byte) (string, error) { f.payload = p; return "h.p.s", f.err }

// fakeRecorder records tokens or fails.
type fakeRecorder struct {
	err  error
	seen []store.IssuedToken
}

func (f *fakeRecorder) RecordToken(_ context.Context, t store.IssuedToken) error {
	f.seen = append(f.seen, t)
	return f.err
}

// fakeIDs derives "gu-<id>".
type fakeIDs struct{}

func (fakeIDs) GlobalUserID(id uint64) string { return fmt.Sprintf("gu-%d", id) }

var now = time.Date(2026, 1, 1, 0, 0, 0, 500_000_000, time.UTC)

func newMinter(t *testing.T, s *fakeSigner, r *fakeRecorder) *minter.Minter {
	m, err := minter.New(minter.Config{Signer: s, Recorder: r, GlobalIDs: fakeIDs{}, Issuer: "https://gl", InstanceID: "inst",
		DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintRecordsOwnerAndTruncatesTimes(t *testing.T) {
	s, r := &fakeSigner{}, &fakeRecorder{}
	tok, err := newMinter(t, s, r).Mint(context.Background(), store.User{ID: 7, Features: []string{"duo_chat"}}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.seen) != 1 || r.seen[0].UserID != 7 || r.seen[0].JTI != tok.Claims.ID {
		t.Fatalf("recorded %+v", r.seen)
	}
	// Default TTL above the maximum is capped; times are whole seconds.
	if want := now.Truncate(time.Second).Add(time.Hour); !tok.Claims.Expiry.Time().Equal(want) || !r.seen[0].ExpireTime.Equal(want) {
		t.Fatalf("expiry %v, want %v", tok.Claims.Expiry, want)
	}
	if tok.Metadata["authorization"] != "Bearer h.p.s" {
		t.Fatalf("metadata %v", tok.Metadata)
	}
	// The user is bound to the token: the claim and the forwarded header
	// carry the same derived value.
	var payload map[string]any
	if err := json.Unmarshal(s.payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["gitlab_global_user_id"] != "gu-7" || tok.Metadata["x-gitlab-global-user-id"] != "gu-7" || tok.Claims.GlobalUserID != "gu-7" {
		t.Fatalf("global user id: claim %v, metadata %q, claims %q; want gu-7 in all three",
			payload["gitlab_global_user_id"], tok.Metadata["x-gitlab-global-user-id"], tok.Claims.GlobalUserID)
	}
}

func TestMintFailsClosed(t *testing.T) {
	user := store.User{ID: 1, Features: []string{"duo_chat"}}
	tests := []struct {
		name string
		s    *fakeSigner
		r    *fakeRecorder
		ttl  time.Duration
		want error
	}{
		{"signing failure is returned", &fakeSigner{err: errors.New("hsm down")}, &fakeRecorder{}, 0, nil},
		{"a token that cannot be recorded is not returned", &fakeSigner{}, &fakeRecorder{err: errors.New("disk full")}, 0, nil},
		{"negative ttl is invalid", &fakeSigner{}, &fakeRecorder{}, -time.Second, minter.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := newMinter(t, tc.s, tc.r).Mint(context.Background(), user, nil, tc.ttl)
			if err == nil || tok != nil {
				t.Fatalf("Mint = %v, %v; want an error and no token", tok, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// expectingRecorder is a group-committing Recorder (minter.Expecter) that
// logs the order of announcements, withdrawals, signatures and records.
type expectingRecorder struct {
	fakeRecorder
	log *[]string
}

func (e *expectingRecorder) ExpectRecord() func() {
	*e.log = append(*e.log, "expect")
	return func() { *e.log = append(*e.log, "arrived") }
}

func (e *expectingRecorder) RecordToken(ctx context.Context, t store.IssuedToken) error {
	*e.log = append(*e.log, "record")
	return e.fakeRecorder.RecordToken(ctx, t)
}

type loggingSigner struct {
	fakeSigner
	log *[]string
}

func (s *loggingSigner) Sign(p []byte) (string, error) {
	*s.log = append(*s.log, "sign")
	return s.fakeSigner.Sign(p)
}

// A group-committing recorder hears of each record while the token is
// being signed, and the announcement is withdrawn before the record (or
// when signing fails), so a commit never waits for a mint that has gone.
func TestMintAnnouncesItsRecordWhileSigning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signErr error
		want    string
	}{
		{"signed", nil, "[expect sign arrived record]"},
		{"signing fails", errors.New("no key"), "[expect sign arrived]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			s := &loggingSigner{fakeSigner: fakeSigner{err: tc.signErr}, log: &log}
			r := &expectingRecorder{log: &log}
			m, err := minter.New(minter.Config{Signer: s, Recorder: r, GlobalIDs: fakeIDs{}, Issuer: "https://gl", InstanceID: "inst",
				MaxTTL: time.Hour, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Mint(context.Background(), store.User{ID: 1, Features: []string{"duo_chat"}}, nil, 0)
			if (err != nil) != (tc.signErr != nil) {
				t.Fatalf("Mint: %v", err)
			}
			if got := fmt.Sprint(log); got != tc.want {
				t.Fatalf("order %s, want %s", got, tc.want)
			}
		})
	}
}
