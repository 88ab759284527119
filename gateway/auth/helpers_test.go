package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/pkg/token"
)

const (
	testIssuer   = "https://gitlab.example.test"
	testInstance = "6a1f7c3e-0d9b-4b5e-9d7e-3f1c2b4a5d60"
	testUser     = "0123456789abcdef"
)

// testNow is the fixed clock every test token is minted against.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKey is a signing key with its published form.
type testKey struct {
	priv any     // raw private key
	pub  jwk.Key // public JWK with kid and alg
	alg  jwa.SignatureAlgorithm
}

func (k *testKey) kid() string { return k.pub.KeyID() }

func newTestKey(t testing.TB, alg jwa.SignatureAlgorithm, kid string) *testKey {
	t.Helper()
	var priv, pub any
	switch alg {
	case jwa.RS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	case jwa.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, &k.PublicKey
	case jwa.EdDSA:
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub = k, p
	}
	return wrapKey(t, alg, kid, priv, pub)
}

func wrapKey(t testing.TB, alg jwa.SignatureAlgorithm, kid string, priv, pub any) *testKey {
	t.Helper()
	jk, err := jwk.FromRaw(pub)
	if err != nil {
		t.Fatal(err)
	}
	_ = jk.Set(jwk.KeyIDKey, kid)
	_ = jk.Set(jwk.AlgorithmKey, alg)
	_ = jk.Set(jwk.KeyUsageKey, "sig")
	return &testKey{priv: priv, pub: jk, alg: alg}
}

// keys shared by the tests: generating RSA keys is slow under -race.
var (
	keysOnce sync.Once
	kRSA     *testKey // published
	kRSA2    *testKey // published (the next key after a rotation)
	kES      *testKey // published
	kEd      *testKey // published
	kRogue   *testKey // never published
	kRemoved *testKey // published once, removed by a rotation
)

func loadKeys(t testing.TB) {
	keysOnce.Do(func() {
		kRSA = newTestKey(t, jwa.RS256, "rsa-1")
		kRSA2 = newTestKey(t, jwa.RS256, "rsa-2")
		kES = newTestKey(t, jwa.ES256, "es-1")
		kEd = newTestKey(t, jwa.EdDSA, "ed-1")
		kRogue = newTestKey(t, jwa.RS256, "rogue")
		kRemoved = newTestKey(t, jwa.RS256, "rsa-0")
	})
}

// fakeKeys is a hand-written KeyLookup.
type fakeKeys struct {
	mu      sync.Mutex
	keys    []*testKey
	err     error // returned by Lookup for every kid (ErrNoKeys, ErrStale)
	lookups int
}

func newFakeKeys(ks ...*testKey) *fakeKeys { return &fakeKeys{keys: ks} }

func (f *fakeKeys) Lookup(_ context.Context, kid string) (jwk.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return nil, f.err
	}
	for _, k := range f.keys {
		if k.kid() == kid {
			return k.pub, nil
		}
	}
	return nil, keyset.ErrUnknownKey
}

func (f *fakeKeys) All() []jwk.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil
	}
	out := make([]jwk.Key, len(f.keys))
	for i, k := range f.keys {
		out[i] = k.pub
	}
	return out
}

func (f *fakeKeys) Has(kid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false
	}
	for _, k := range f.keys {
		if k.kid() == kid {
			return true
		}
	}
	return false
}

func (f *fakeKeys) set(ks ...*testKey) {
	f.mu.Lock()
	f.keys = ks
	f.mu.Unlock()
}

// goodClaims are what the issuer mints, relative to testNow.
func goodClaims() map[string]any {
	iat := testNow.Add(-time.Minute)
	return map[string]any{
		token.ClaimID:           "0b6e2c1a-7f3d-4e8a-9c2b-5d4f3e2a1b0c",
		token.ClaimAudience:     []string{token.Audience},
		token.ClaimSubject:      testInstance,
		token.ClaimIssuer:       testIssuer,
		token.ClaimIssuedAt:     iat.Unix(),
		token.ClaimNotBefore:    iat.Add(-token.NotBeforeSkew).Unix(),
		token.ClaimExpiry:       iat.Add(token.DefaultTTL).Unix(),
		token.ClaimRealm:        token.RealmSelfManaged,
		token.ClaimScopes:       []string{"complete_code", "duo_chat"},
		token.ClaimInstanceID:   testInstance,
		token.ClaimGlobalUserID: testUser,
	}
}

func with(c map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signRaw builds a compact JWS over exactly the given header and payload
// bytes, so tests can send what jwx would refuse to produce.
func signRaw(t testing.TB, alg jwa.SignatureAlgorithm, priv any, header, payload string) string {
	t.Helper()
	input := enc(header) + "." + enc(payload)
	s, err := jws.NewSigner(alg)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign([]byte(input), priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// mint signs claims with k, with kid and typ in the header.
func mint(t testing.TB, k *testKey, claims map[string]any) string {
	t.Helper()
	return signRaw(t, k.alg, k.priv, mustJSON(t, map[string]any{"alg": k.alg.String(), "kid": k.kid(), "typ": "JWT"}), mustJSON(t, claims))
}

// mintNoKID signs like older GitLab versions: no kid in the header.
func mintNoKID(t testing.TB, k *testKey, claims map[string]any) string {
	t.Helper()
	return signRaw(t, k.alg, k.priv, mustJSON(t, map[string]any{"alg": k.alg.String(), "typ": "JWT"}), mustJSON(t, claims))
}

// goodMD is the metadata a well-behaved caller sends with tok.
func goodMD(tok string) metadata.MD {
	return metadata.New(token.Metadata(tok, testInstance, testUser))
}

func mdWith(md metadata.MD, kv ...string) metadata.MD {
	out := md.Copy()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			delete(out, kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	return out
}

// revokedSet is a hand-written revocation source.
type revokedSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *revokedSet) Revoked(jti string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[jti]
}

func (r *revokedSet) add(jti string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]bool{}
	}
	r.m[jti] = true
}

var errStaleForTest = keyset.ErrStale
