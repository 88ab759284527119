package keys

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/airlock-dev/airlock/pkg/keypolicy"
)

// The compact JWS every mint returns, assembled here rather than by jwx's
// jws.Sign: jwx builds, merges and marshals a header object per call (≈ 4 %
// of the issuer's CPU per RS256 mint, more than everything else a mint does
// besides the signature and the commit), while a key's protected header
// never changes. The bytes are what jwx writes for the same key and
// payload (its header members sorted: alg, kid, typ; RS256 and EdDSA
// signatures are deterministic, so whole tokens match; see jws_test.go),
// and the first signature of every key is still verified with jwx (Sign).

// protectedHeader is a key's JWS header, members in jwx's (sorted) order.
type protectedHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// encodeHeader returns the base64url encoding of the protected header of
// tokens signed by kid with alg.
func encodeHeader(alg, kid string) (string, error) {
	b, err := json.Marshal(protectedHeader{Alg: alg, Kid: kid, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// compact returns header.payload.signature, the header already encoded.
func compact(signer crypto.Signer, alg, header string, payload []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(header)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(512))
	buf = append(buf, header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig, err := rawSignature(signer, alg, buf)
	if err != nil {
		return "", err
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// rawSignature signs the JWS signing input as RFC 7518 defines the
// signature of alg: PKCS #1 v1.5 over SHA-256 (RS256), R‖S of 32 bytes each
// over SHA-256 (ES256), Ed25519 over the input itself (EdDSA).
func rawSignature(signer crypto.Signer, alg string, input []byte) ([]byte, error) {
	switch alg {
	case keypolicy.RS256:
		h := sha256.Sum256(input)
		return signer.Sign(rand.Reader, h[:], crypto.SHA256)
	case keypolicy.ES256:
		h := sha256.Sum256(input)
		der, err := signer.Sign(rand.Reader, h[:], crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return p256RS(der)
	case keypolicy.EdDSA:
		return signer.Sign(rand.Reader, input, crypto.Hash(0))
	}
	return nil, fmt.Errorf("keys: %w", keypolicy.Unsupported(alg))
}

// p256RS converts an ASN.1 ECDSA signature to the fixed-size R‖S form JWS
// uses for ES256.
func p256RS(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, fmt.Errorf("keys: malformed ECDSA signature")
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}
