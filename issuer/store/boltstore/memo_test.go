package boltstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
)

// authFixture stores a user and a PAT the way every authenticated call
// reads them.
func authFixture(t testing.TB) (*boltstore.Store, []byte, uint64) {
	t.Helper()
	ctx := context.Background()
	s, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	u, err := s.CreateUser(ctx, store.User{Username: "u", Role: store.RoleUser, Features: []string{"duo_chat", "code_completions"}, CreateTime: time.Unix(1e9, 0)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("secret"))
	if err := s.CreatePAT(ctx, store.PAT{ID: "p1", Hash: h[:], UserID: u.ID, Username: "u",
		CreateTime: time.Unix(1e9, 0), ExpireTime: time.Unix(2e9, 0)}); err != nil {
		t.Fatal(err)
	}
	return s, h[:], u.ID
}

// The decoded records are remembered by their stored bytes: what a caller
// does to a returned value must not reach the next caller, and a revoked
// PAT is never served from the memo as unrevoked.
func TestAuthLookupsAreUnsharedAndFresh(t *testing.T) {
	ctx := context.Background()
	s, hash, uid := authFixture(t)
	for range 2 { // the second round is served from the memo
		p, err := s.GetPATByHash(ctx, hash)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p.Hash, hash) || !p.RevokeTime.IsZero() {
			t.Fatalf("GetPATByHash = %+v", p)
		}
		p.Hash[0] ^= 0xff
		u, err := s.GetUserByID(ctx, uid)
		if err != nil {
			t.Fatal(err)
		}
		if len(u.Features) != 2 || u.Features[0] != "duo_chat" {
			t.Fatalf("GetUserByID = %+v", u)
		}
		u.Features[0] = "tampered"
	}
	if _, err := s.RevokePAT(ctx, "p1", time.Unix(15e8, 0)); err != nil {
		t.Fatal(err)
	}
	p, err := s.GetPATByHash(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if !p.RevokeTime.Equal(time.Unix(15e8, 0)) {
		t.Fatalf("after RevokePAT, GetPATByHash has RevokeTime %v", p.RevokeTime)
	}
}

// More distinct PATs than the memo holds still all resolve (the memo starts
// over instead of growing without bound).
func TestAuthLookupsBeyondMemoSize(t *testing.T) {
	ctx := context.Background()
	s, _, uid := authFixture(t)
	const n = 1500
	hashes := make([][]byte, n)
	for i := range n {
		h := sha256.Sum256(fmt.Appendf(nil, "pat-%d", i))
		hashes[i] = h[:]
		if err := s.CreatePAT(ctx, store.PAT{ID: fmt.Sprintf("q%d", i), Hash: h[:], UserID: uid, Username: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		for i, h := range hashes {
			p, err := s.GetPATByHash(ctx, h)
			if err != nil || p.ID != fmt.Sprintf("q%d", i) {
				t.Fatalf("GetPATByHash #%d = %+v, %v", i, p, err)
			}
		}
	}
}

// BenchmarkAuthLookup is what the issuer's authenticator reads from the
// store on every call: the PAT by its hash, then its owner.
func BenchmarkAuthLookup(b *testing.B) {
	ctx := context.Background()
	s, hash, uid := authFixture(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetPATByHash(ctx, hash); err != nil {
				b.Error(err)
				return
			}
			if _, err := s.GetUserByID(ctx, uid); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// The lookups every authenticated call makes decode nothing they have
// seen: decoding the two records with encoding/json took 13 more
// allocations (39 in all); a return to decoding per call fails here.
func TestAuthLookupAllocations(t *testing.T) {
	ctx := context.Background()
	s, hash, uid := authFixture(t)
	n := testing.AllocsPerRun(50, func() {
		if _, err := s.GetPATByHash(ctx, hash); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUserByID(ctx, uid); err != nil {
			t.Fatal(err)
		}
	})
	if n > 30 {
		t.Fatalf("%.0f allocations per PAT and user lookup, want at most 30", n)
	}
}
