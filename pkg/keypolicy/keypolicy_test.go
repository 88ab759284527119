package keypolicy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

func mustRSA(t *testing.T, bits int) *rsa.PublicKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func mustEC(t *testing.T, c elliptic.Curve) *ecdsa.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &k.PublicKey
}

func TestKeysAreBoundToOneAlgorithm(t *testing.T) {
	pubEd, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		pub     crypto.PublicKey
		wantAlg string // "" means the key is refused for every algorithm
	}{
		{"RSA 2048 verifies RS256", mustRSA(t, 2048), RS256},
		{"RSA 1024 is too small", mustRSA(t, 1024), ""},
		{"EC P-256 verifies ES256", mustEC(t, elliptic.P256()), ES256},
		{"EC P-384 is refused", mustEC(t, elliptic.P384()), ""},
		{"Ed25519 verifies EdDSA", pubEd, EdDSA},
		{"truncated Ed25519 is refused", pubEd[:16], ""},
		{"an RSA key without a modulus is refused", &rsa.PublicKey{E: 65537}, ""},
		{"an HMAC secret is refused", []byte("secret"), ""},
		{"nil is refused", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Supported(tc.pub); got != (tc.wantAlg != "") {
				t.Errorf("Supported = %v", got)
			}
			for _, alg := range append(Algs(), "none", "HS256", "PS256", "ES384", "rs256") {
				if got, want := Matches(alg, tc.pub), alg == tc.wantAlg; got != want {
					t.Errorf("Matches(%s) = %v, want %v", alg, got, want)
				}
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	for _, alg := range Algs() {
		if !Allowed(alg) {
			t.Errorf("Allowed(%s) = false", alg)
		}
	}
	for _, alg := range []string{"", "none", "HS256", "RS384", "PS256", "ES384", "rs256", "EDDSA"} {
		if Allowed(alg) {
			t.Errorf("Allowed(%q) = true", alg)
		}
	}
}

func TestGenerateMeetsThePolicy(t *testing.T) {
	for _, alg := range Algs() {
		k, err := Generate(alg)
		if err != nil {
			t.Fatalf("Generate(%s): %v", alg, err)
		}
		if !Matches(alg, k.Public()) {
			t.Errorf("Generate(%s) made a %T that does not match", alg, k)
		}
	}
	if p, ok := mustGenerate(t, RS256).Public().(*rsa.PublicKey); !ok || p.N.BitLen() != MinRSABits {
		t.Errorf("RS256 key is not %d bits", MinRSABits)
	}
}

func mustGenerate(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := Generate(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestUnknownAlgorithmMessage(t *testing.T) {
	const want = `unsupported algorithm "HS256": want RS256, ES256 or EdDSA`
	if _, err := Generate("HS256"); err == nil || err.Error() != want {
		t.Fatalf("Generate(HS256) error = %v, want %s", err, want)
	}
	if got := AlgList(); got != "RS256, ES256 or EdDSA" {
		t.Fatalf("AlgList = %q", got)
	}
}
