// Package bearer reads and writes the one form of bearer credential both
// services accept in the authorization metadata: RFC 6750 §2.1's
// `"Bearer" 1*SP b64token`, narrowed to exactly one space and with no white
// space around the credential. The issuer (personal access tokens) and the
// gateway (self-issued JWTs) parse with it, and the clients in this module
// write with it, so the two services cannot disagree about white space. The
// credential's characters beyond that are for its reader to judge (the
// gateway answers a malformed JWT differently from a malformed header).
package bearer

import "strings"

// Scheme is the authentication scheme, as written.
const Scheme = "Bearer"

// Format returns the authorization value for credential: "Bearer <credential>".
// It does not trim or check credential; callers pass what they were given.
func Format(credential string) string { return Scheme + " " + credential }

// Parse returns the credential of an authorization value. It accepts exactly
// the scheme (compared without regard to case, RFC 9110 §11.1), one space,
// and a non-empty credential with no white space or control character in it.
// Everything else is refused (ok false): another scheme, no credential,
// leading, trailing or doubled spaces, a tab, two credentials. The
// credential itself is not interpreted.
func Parse(value string) (credential string, ok bool) {
	scheme, cred, found := strings.Cut(value, " ")
	if !found || !strings.EqualFold(scheme, Scheme) || cred == "" {
		return "", false
	}
	for i := 0; i < len(cred); i++ {
		if c := cred[i]; c <= ' ' || c == 0x7f {
			return "", false
		}
	}
	return cred, true
}
