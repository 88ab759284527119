package keys

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/airlock-dev/airlock/pkg/keypolicy"
)

// The hand-assembled JWS is what jwx's jws.Sign writes for the same key,
// header and payload: byte for byte where the signature is deterministic
// (RS256, EdDSA), and verifiable by jwx with the published key for all.
func TestCompactMatchesJWX(t *testing.T) {
	payload := []byte(`{"aud":["gitlab-ai-gateway"],"sub":"inst","n":"ü\u2028<>&"}`)
	for _, alg := range keypolicy.Algs() {
		t.Run(alg, func(t *testing.T) {
			signer, err := keypolicy.Generate(alg)
			if err != nil {
				t.Fatal(err)
			}
			k, err := newKey(signer, alg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := compact(k.signer, alg, k.header, payload)
			if err != nil {
				t.Fatal(err)
			}
			h := jws.NewHeaders()
			_ = h.Set(jws.KeyIDKey, k.meta.KID)
			_ = h.Set(jws.TypeKey, "JWT")
			want, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(alg), signer, jws.WithProtectedHeaders(h)))
			if err != nil {
				t.Fatal(err)
			}
			gotParts, wantParts := strings.Split(got, "."), strings.Split(string(want), ".")
			if len(gotParts) != 3 || gotParts[0] != wantParts[0] || gotParts[1] != wantParts[1] {
				t.Fatalf("header.payload\n got %s\nwant %s", got, want)
			}
			if alg != keypolicy.ES256 && got != string(want) { // ECDSA signatures are randomised
				t.Fatalf("token\n got %s\nwant %s", got, want)
			}
			verified, err := jws.Verify([]byte(got), jws.WithKey(jwa.SignatureAlgorithm(alg), k.pub))
			if err != nil {
				t.Fatalf("jwx does not verify the token: %v", err)
			}
			if !bytes.Equal(verified, payload) {
				t.Fatalf("verified payload %s", verified)
			}
			hdr, err := base64.RawURLEncoding.DecodeString(gotParts[0])
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]string
			if err := json.Unmarshal(hdr, &fields); err != nil || len(fields) != 3 || fields["alg"] != alg || fields["kid"] != k.meta.KID || fields["typ"] != "JWT" {
				t.Fatalf("protected header %s", hdr)
			}
		})
	}
}

func TestP256RSRejectsMalformedSignatures(t *testing.T) {
	for name, der := range map[string][]byte{
		"empty":         nil,
		"trailing data": append([]byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, 0),
		"zero r":        {0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01},
		"negative s":    {0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0xff},
		"r too long":    append(append([]byte{0x30, 0x26, 0x02, 0x21, 0x01}, make([]byte, 32)...), 0x02, 0x01, 0x01),
	} {
		if _, err := p256RS(der); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	got, err := p256RS([]byte{0x30, 0x06, 0x02, 0x01, 0x07, 0x02, 0x01, 0x09})
	if err != nil || len(got) != 64 || got[31] != 7 || got[63] != 9 || !bytes.Equal(got[:31], make([]byte, 31)) {
		t.Fatalf("p256RS = %x, %v", got, err)
	}
}

// BenchmarkSign is the issuer's signature of one token (Manager.Sign without
// the lock): header, encoding and the signature itself.
func BenchmarkSign(b *testing.B) {
	payload := []byte(`{"aud":["gitlab-ai-gateway"],"exp":1767229200,"gitlab_global_user_id":"b3BhcXVlLWlk","gitlab_instance_id":"inst","gitlab_realm":"self-managed","iat":1767225600,"iss":"https://gitlab.example.com","jti":"4b3c2d1e-0000-4000-8000-000000000000","nbf":1767225595,"scopes":["code_suggestions","duo_chat"],"sub":"inst"}`)
	for _, alg := range keypolicy.Algs() {
		signer, err := keypolicy.Generate(alg)
		if err != nil {
			b.Fatal(err)
		}
		k, err := newKey(signer, alg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := compact(k.signer, alg, k.header, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/jwx", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h := jws.NewHeaders()
				_ = h.Set(jws.KeyIDKey, k.meta.KID)
				_ = h.Set(jws.TypeKey, "JWT")
				if _, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(alg), signer, jws.WithProtectedHeaders(h))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// p256RS never panics, and whatever it accepts is a DER signature whose R
// and S it places, right-aligned, in 32 bytes each.
func FuzzP256RS(f *testing.F) {
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x07, 0x02, 0x01, 0x09})
	f.Add(append(append([]byte{0x30, 0x44, 0x02, 0x20}, bytes.Repeat([]byte{0x7f}, 32)...), append([]byte{0x02, 0x20}, bytes.Repeat([]byte{0x01}, 32)...)...))
	f.Add([]byte{0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		out, err := p256RS(der)
		if err != nil {
			return
		}
		var sig struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &sig); err != nil {
			t.Fatalf("accepted %x that encoding/asn1 refuses: %v", der, err)
		}
		if len(out) != 64 || new(big.Int).SetBytes(out[:32]).Cmp(sig.R) != 0 || new(big.Int).SetBytes(out[32:]).Cmp(sig.S) != 0 {
			t.Fatalf("p256RS(%x) = %x", der, out)
		}
	})
}

// Signing allocates a handful of objects besides the signature's own
// (jwx's jws.Sign allocated 77–154 per token: header objects built, merged
// and marshalled per call); a return to per-call header building fails here.
func TestCompactAllocations(t *testing.T) {
	payload := []byte(`{"sub":"inst","jti":"4b3c2d1e-0000-4000-8000-000000000000"}`)
	for alg, most := range map[string]float64{keypolicy.EdDSA: 6, keypolicy.RS256: 12} {
		signer, err := keypolicy.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		k, err := newKey(signer, alg)
		if err != nil {
			t.Fatal(err)
		}
		n := testing.AllocsPerRun(20, func() {
			if _, err := compact(k.signer, alg, k.header, payload); err != nil {
				t.Fatal(err)
			}
		})
		if n > most {
			t.Errorf("%s: %.0f allocations per signature, want at most %.0f", alg, n, most)
		}
	}
}
