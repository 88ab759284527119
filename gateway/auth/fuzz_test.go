package auth

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fuzzKey is deterministic so the committed seed corpus holds tokens that
// really verify, letting the fuzzer start from the accepting path.
func fuzzKey(t testing.TB) *testKey {
	priv := ed25519.NewKeyFromSeed([]byte("airlock-fuzz-seed-0123456789abcd"))
	return wrapKey(t, jwa.EdDSA, "fuzz-ed", priv, priv.Public())
}

func fuzzSeeds(t testing.TB) [][2]string {
	k := fuzzKey(t)
	c := goodClaims()
	good := mint(t, k, c)
	return [][2]string{
		{good, testInstance},
		{mintNoKID(t, k, c), testInstance},
		{good, "other-instance"},
		{mint(t, k, with(c, "exp", "1772370000")), testInstance},
		{signRaw(t, jwa.EdDSA, k.priv, `{"alg":"EdDSA","kid":"fuzz-ed","crit":["x"]}`, mustJSON(t, c)), testInstance},
		{signRaw(t, jwa.EdDSA, k.priv, `{"alg":"EdDSA","kid":"fuzz-ed"}`, `{"exp":1,"exp":2}`), testInstance},
		{signRaw(t, jwa.EdDSA, k.priv, `{"alg":"EdDSA","kid":"fuzz-ed"}`, `[{"a":"\u0000"}]`), testInstance},
		{"e30.e30.AA", testInstance},
		{"..", ""},
	}
}

// FuzzVerify drives the whole verification path with arbitrary tokens and
// instance ids. Invariants: no panic; every refusal is Unauthenticated with
// one of the real gateway's messages; and anything accepted carries a
// signature that jwx's own jws.Verify accepts with the published key.
func FuzzVerify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[0], s[1])
	}
	k := fuzzKey(f)
	keys := newFakeKeys(k)
	v, _ := newTestVerifier(f, keys, nil)
	allowed := map[string]bool{
		MsgNoAuthorization: true, MsgBadAuthorization: true, MsgForbidden: true,
		MsgInstanceMismatch: true, MsgRealmMismatch: true,
	}
	f.Fuzz(func(t *testing.T, tok, instanceID string) {
		md := mdWith(goodMD(tok), "x-gitlab-instance-id", instanceID)
		id, err := v.Verify(context.Background(), md)
		if err != nil {
			st := status.Convert(err)
			if st.Code() != codes.Unauthenticated || !allowed[st.Message()] {
				t.Fatalf("refusal %v %q", st.Code(), st.Message())
			}
			return
		}
		if _, err := jws.Verify([]byte(tok), jws.WithKey(jwa.EdDSA, k.pub)); err != nil {
			t.Fatalf("accepted a token jws.Verify refuses: %v", err)
		}
		if id.Subject != instanceID || id.JTI == "" {
			t.Fatalf("accepted identity %+v for instance %q", id, instanceID)
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzVerify when
// AIRLOCK_WRITE_FUZZ_SEEDS=1; otherwise it checks the corpus is there.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	if os.Getenv("AIRLOCK_WRITE_FUZZ_SEEDS") != "1" {
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) == 0 {
			t.Fatalf("seed corpus missing in %s: %v", dir, err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		body := "go test fuzz v1\nstring(" + strconv.Quote(s[0]) + ")\nstring(" + strconv.Quote(s[1]) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed-"+strconv.Itoa(i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
