package verify

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"go.uber.org/goleak"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bench != nil {
		bench.stop() // the benchmarks' shared fixture outlives each benchmark
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	issuer   = "http://127.0.0.1:9441"
	instance = "6a1f7c3e-0d9b-4b5e-9d7e-3f1c2b4a5d60"
)

// now is the fixed clock tokens are minted and verified against.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a published RSA key behind a real keyset.Cache (fed over HTTP
// JWKS from a loopback server, as a gateway with --jwks-url is) and tokens
// it signed, each with its own jti.
type fixture struct {
	pub   jwk.Key
	cache *keyset.Cache
	toks  []string
	mds   []metadata.MD
	stop  func()
}

func newFixture(tb testing.TB, n int) *fixture {
	tb.Helper()
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		tb.Fatal(err)
	}
	if err := jwk.AssignKeyID(priv); err != nil {
		tb.Fatal(err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		tb.Fatal(err)
	}
	_ = pub.Set(jwk.AlgorithmKey, jwa.RS256)
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	jwks, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=86400")
		_, _ = w.Write(jwks)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cache := keyset.NewHTTP(srv.URL, srv.Client(), keyset.Options{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cache.Run(ctx) }()
	f := &fixture{pub: pub, cache: cache, stop: func() { cancel(); wg.Wait(); srv.Close() }}
	for deadline := time.Now().Add(10 * time.Second); !cache.Ready(); {
		if time.Now().After(deadline) {
			f.stop()
			tb.Fatal("key set not loaded")
		}
		time.Sleep(time.Millisecond)
	}
	_ = priv.Set(jwk.AlgorithmKey, jwa.RS256)
	iat := now.Add(-time.Minute)
	for range n {
		tok, err := jwt.NewBuilder().JwtID(uuid.NewString()).Issuer(issuer).Subject(instance).
			Audience([]string{token.Audience}).IssuedAt(iat).NotBefore(iat.Add(-token.NotBeforeSkew)).
			Expiration(iat.Add(token.DefaultTTL)).Claim(token.ClaimRealm, token.RealmSelfManaged).
			Claim(token.ClaimScopes, []string{"complete_code", "duo_chat"}).Build()
		if err != nil {
			tb.Fatal(err)
		}
		signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256, priv))
		if err != nil {
			tb.Fatal(err)
		}
		f.toks = append(f.toks, string(signed))
		f.mds = append(f.mds, metadata.New(token.Metadata(string(signed), instance, "global-user-7")))
	}
	return f
}

func (f *fixture) verifier(tb testing.TB) *auth.Verifier {
	tb.Helper()
	v, err := auth.NewVerifier(auth.Config{Keys: f.cache, Issuer: issuer, Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func TestFixtureTokensPassBothPaths(t *testing.T) {
	f := newFixture(t, 2)
	t.Cleanup(f.stop)
	v := f.verifier(t)
	for i, md := range f.mds {
		id, err := v.Verify(context.Background(), md)
		if err != nil {
			t.Fatalf("token %d: auth path refused it: %v", i, err)
		}
		if id.Subject != instance {
			t.Fatalf("token %d: subject %q", i, id.Subject)
		}
		if _, err := jws.Verify([]byte(f.toks[i]), jws.WithKey(jwa.RS256, f.pub)); err != nil {
			t.Fatalf("token %d: bare verification refused it: %v", i, err)
		}
	}
	if f.toks[0] == f.toks[1] {
		t.Fatal("fixture tokens are not distinct")
	}
}

// tokensPerVerifier is how many distinct tokens one benchmark verifier sees
// before it is replaced, so every timed Verify is a cache miss (signing a
// fresh RS256 token per iteration would dwarf what is measured).
const tokensPerVerifier = 512

var (
	benchOnce sync.Once
	bench     *fixture // stopped by TestMain
)

// sharedFixture mints the tokens once per process: -count runs reuse them.
func sharedFixture(b *testing.B) *fixture {
	benchOnce.Do(func() { bench = newFixture(b, tokensPerVerifier) })
	if bench == nil {
		b.Fatal("fixture failed")
	}
	return bench
}

// BenchmarkAuthPathDistinctRS256 is the gateway's per-request auth cost for
// a token it has not seen: metadata checks, strict parse, key lookup in the
// lock-free key set, RS256 signature, claims, headers and the cache insert.
func BenchmarkAuthPathDistinctRS256(b *testing.B) {
	f := sharedFixture(b)
	ctx := context.Background()
	var v *auth.Verifier
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(f.mds)
		if j == 0 {
			b.StopTimer()
			v = f.verifier(b)
			b.StartTimer()
		}
		if _, err := v.Verify(ctx, f.mds[j]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareJWSVerifyRS256 verifies only the signatures of the same
// tokens with jwx, the floor of any verifier.
func BenchmarkBareJWSVerifyRS256(b *testing.B) {
	f := sharedFixture(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := jws.Verify([]byte(f.toks[i%len(f.toks)]), jws.WithKey(jwa.RS256, f.pub)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthPathCacheHit is a repeated token: no signature check, only
// the checks a hit still makes (metadata, revocation, key still published,
// headers against claims).
func BenchmarkAuthPathCacheHit(b *testing.B) {
	f := sharedFixture(b)
	v := f.verifier(b)
	ctx := context.Background()
	if _, err := v.Verify(ctx, f.mds[0]); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(ctx, f.mds[0]); err != nil {
			b.Fatal(err)
		}
	}
}
