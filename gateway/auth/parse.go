package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/pkg/token"
)

// The token is parsed here rather than by jwx because the verifier needs
// guarantees jwx does not give: duplicate member names rejected (two "exp"
// or "aud" members are ambiguous, and a parser that keeps the last one
// disagrees with one that keeps the first), claims strictly typed (an `exp`
// sent as a string is refused, not coerced), and header parameters that
// would let the token choose its own key (jku, x5u, jwk, x5c) refused
// outright. jwx still performs the signature check.

var (
	errSegments   = errors.New("token is not three base64url segments")
	errNotObject  = errors.New("JSON is not an object")
	errDuplicate  = errors.New("duplicate member name")
	errClaimType  = errors.New("claim has the wrong type")
	errHeaderType = errors.New("header parameter has the wrong type")
)

var b64 = base64.RawURLEncoding.Strict()

// jwsParts is a compact JWS split into its pieces.
type jwsParts struct {
	header       jwsHeader
	signingInput string // BASE64URL(header) "." BASE64URL(payload)
	payload      []byte
	signature    []byte
}

type jwsHeader struct {
	alg, kid string
	// untrusted is set when the header carries a parameter the verifier
	// refuses: crit (no extension is understood, so RFC 7515 §4.1.11 says
	// reject), a key or key location (jku, jwk, x5u, x5c), or b64
	// (RFC 7797, which changes what is signed).
	untrusted bool
}

// splitJWS parses a compact JWS. It does not verify anything.
func splitJWS(tok string) (*jwsParts, error) {
	h, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return nil, errSegments
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(s, '.') >= 0 || h == "" || p == "" || s == "" {
		return nil, errSegments
	}
	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, err
	}
	parts := &jwsParts{signingInput: tok[:len(h)+1+len(p)]}
	if parts.payload, err = b64.DecodeString(p); err != nil {
		return nil, err
	}
	if parts.signature, err = b64.DecodeString(s); err != nil {
		return nil, err
	}
	if err := parseHeader(hb, &parts.header); err != nil {
		return nil, err
	}
	return parts, nil
}

func parseHeader(data []byte, h *jwsHeader) error {
	return members(data, func(key string, val []byte) error {
		var err error
		switch key {
		case "alg":
			h.alg, err = jsonString(val)
		case "kid":
			h.kid, err = jsonString(val)
		case "typ":
			// Informational (RFC 7519 §5.1); checked for type only.
			_, err = jsonString(val)
		case "crit", "jku", "jwk", "x5u", "x5c", "b64":
			h.untrusted = true
		}
		if err != nil {
			return errHeaderType
		}
		return nil
	})
}

// claims are the payload members the verifier reads, named by the token.Claim*
// constants (the names token.Claims encodes). Presence flags keep "absent"
// apart from "zero". It is not token.Claims: this parser is stricter than
// encoding/json and keeps fractional dates and presence.
type claims struct {
	iss, sub, jti, realm, instanceID string
	globalUserID                     string
	aud, scopes                      []string
	exp, nbf, iat                    time.Time
	hasExp, hasNbf, hasIat           bool
	hasInstanceID, hasGlobalUserID   bool
}

func parseClaims(data []byte) (*claims, error) {
	c := &claims{}
	err := members(data, func(key string, val []byte) error {
		var err error
		switch key {
		case token.ClaimIssuer:
			c.iss, err = jsonString(val)
		case token.ClaimSubject:
			c.sub, err = jsonString(val)
		case token.ClaimID:
			c.jti, err = jsonString(val)
		case token.ClaimRealm:
			c.realm, err = jsonString(val)
		case token.ClaimInstanceID:
			c.instanceID, err = jsonString(val)
			c.hasInstanceID = true
		case token.ClaimGlobalUserID:
			c.globalUserID, err = jsonString(val)
			c.hasGlobalUserID = true
		case token.ClaimAudience:
			// RFC 7519 §4.1.3: a single string or an array of strings.
			if len(val) > 0 && val[0] == '"' {
				var s string
				s, err = jsonString(val)
				c.aud = []string{s}
			} else {
				c.aud, err = jsonStrings(val)
			}
		case token.ClaimScopes:
			c.scopes, err = jsonStrings(val)
		case token.ClaimExpiry:
			c.exp, err = numericDate(val)
			c.hasExp = true
		case token.ClaimNotBefore:
			c.nbf, err = numericDate(val)
			c.hasNbf = true
		case token.ClaimIssuedAt:
			c.iat, err = numericDate(val)
			c.hasIat = true
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// numericDate reads an RFC 7519 NumericDate: a JSON number (never a string)
// of seconds since the epoch, non-negative and below year 5138.
func numericDate(val []byte) (time.Time, error) {
	if len(val) == 0 || val[0] < '0' || val[0] > '9' {
		return time.Time{}, errClaimType
	}
	f, err := strconv.ParseFloat(string(val), 64)
	if err != nil || f < 0 || f >= 1e11 || math.IsNaN(f) {
		return time.Time{}, errClaimType
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)), nil
}

func jsonString(val []byte) (string, error) {
	if len(val) < 2 || val[0] != '"' {
		return "", errClaimType
	}
	if bytes.IndexByte(val, '\\') < 0 {
		return string(val[1 : len(val)-1]), nil
	}
	var s string
	if err := json.Unmarshal(val, &s); err != nil {
		return "", errClaimType
	}
	return s, nil
}

func jsonStrings(val []byte) ([]string, error) {
	if len(val) == 0 || val[0] != '[' {
		return nil, errClaimType
	}
	var out []string
	if err := json.Unmarshal(val, &out); err != nil {
		return nil, errClaimType
	}
	return out, nil
}

// members calls fn with each member of the JSON object in data, in order:
// the decoded name and the raw value. It rejects anything that is not one
// well-formed object, and duplicate names, compared after unescaping (so
// "exp" and "\u0065xp" are the same name).
func members(data []byte, fn func(key string, val []byte) error) error {
	if !json.Valid(data) {
		return errNotObject
	}
	i := skipWS(data, 0)
	if data[i] != '{' {
		return errNotObject
	}
	i = skipWS(data, i+1)
	if data[i] == '}' {
		return nil
	}
	seen := make(map[string]struct{}, 12)
	for {
		// json.Valid guarantees the grammar from here on: a name, ':', a
		// value, then ',' or '}'.
		end := skipString(data, i)
		key, err := jsonString(data[i:end])
		if err != nil {
			return errNotObject
		}
		if _, dup := seen[key]; dup {
			return errDuplicate
		}
		seen[key] = struct{}{}
		i = skipWS(data, skipWS(data, end)+1)
		vend := skipValue(data, i)
		if err := fn(key, data[i:vend]); err != nil {
			return err
		}
		i = skipWS(data, vend)
		if data[i] == '}' {
			return nil
		}
		i = skipWS(data, i+1)
	}
}

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(data)
}

// skipValue returns the index just past the (valid) value at data[i].
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(data)
	}
	j := i
	for j < len(data) {
		switch data[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return j
		}
		j++
	}
	return j
}
