package pat_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
)

func TestGenerate(t *testing.T) {
	id, secret, err := pat.GenerateFrom(bytes.NewReader(bytes.Repeat([]byte{0xff}, 41)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "alpat_" + strings.Repeat("_", 42) + "8"; secret != want {
		t.Fatalf("secret %q, want %q", secret, want)
	}
	if id != "pat-____________" {
		t.Fatalf("id %q", id)
	}
	if _, err := pat.Parse(secret); err != nil {
		t.Fatalf("Parse(Generate()) = %v", err)
	}
	_, _, err = pat.GenerateFrom(iotest.ErrReader(errors.New("no entropy")))
	if err == nil || !strings.Contains(err.Error(), "no entropy") {
		t.Fatalf("short randomness: %v", err)
	}
	a, sa, _ := pat.Generate()
	b, sb, _ := pat.Generate()
	if a == b || sa == sb {
		t.Fatal("two Generate calls returned the same token")
	}
}

func TestParse(t *testing.T) {
	good := "alpat_" + strings.Repeat("A", 43)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"well-formed", good, true},
		{"empty", "", false},
		{"prefix only", "alpat_", false},
		{"other prefix", "glpat_" + strings.Repeat("A", 43), false},
		{"one character short", good[:len(good)-1], false},
		{"one character long", good + "A", false},
		{"standard base64 alphabet", "alpat_" + strings.Repeat("+", 43), false},
		{"padding", "alpat_" + strings.Repeat("A", 42) + "=", false},
		{"non-canonical last character", "alpat_" + strings.Repeat("A", 42) + "B", false},
		{"surrounding space", " " + good, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pat.Parse(tc.in)
			if tc.ok && (err != nil || got != tc.in) {
				t.Fatalf("Parse(%q) = %q, %v", tc.in, got, err)
			}
			if !tc.ok && !errors.Is(err, pat.ErrMalformed) {
				t.Fatalf("Parse(%q) = %v, want ErrMalformed", tc.in, err)
			}
		})
	}
}

func TestHashAndVerify(t *testing.T) {
	_, secret, err := pat.Generate()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(secret))
	h := pat.Hash(secret)
	tests := []struct {
		name   string
		secret string
		hash   []byte
		want   bool
	}{
		{"its own hash", secret, h, true},
		{"the hash is SHA-256", secret, sum[:], true},
		{"another secret", secret[:len(secret)-1] + "x", h, false},
		{"truncated hash", secret, h[:31], false},
		{"empty hash", secret, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pat.Verify(tc.secret, tc.hash); got != tc.want {
				t.Fatalf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

type fakeCreator struct {
	got []store.PAT
	err error
}

func (f *fakeCreator) CreatePAT(_ context.Context, p store.PAT) error {
	f.got = append(f.got, p)
	return f.err
}

func TestIssue(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	u := store.User{ID: 7, Username: "carol"}
	tests := []struct {
		name    string
		err     error
		wantErr error
	}{
		{"stores the hash and returns the secret once", nil, nil},
		{"store error is returned", store.ErrNotFound, store.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &fakeCreator{err: tc.err}
			p, secret, err := pat.Issue(context.Background(), st, u, now, now.Add(time.Hour))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(st.got) != 1 {
				t.Fatalf("%d CreatePAT calls", len(st.got))
			}
			stored := st.got[0]
			if tc.err == nil && !pat.Verify(secret, stored.Hash) {
				t.Fatal("stored hash does not verify the returned secret")
			}
			if bytes.Contains(stored.Hash, []byte("alpat_")) || stored.UserID != 7 || stored.Username != "carol" ||
				!stored.CreateTime.Equal(now) || !stored.ExpireTime.Equal(now.Add(time.Hour)) || !strings.HasPrefix(stored.ID, pat.IDPrefix) {
				t.Fatalf("stored %+v", stored)
			}
			if tc.err != nil && (secret != "" || p.ID != "") {
				t.Fatalf("failed Issue returned a token: %+v %q", p, secret)
			}
		})
	}
}
