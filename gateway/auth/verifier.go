// Package auth verifies the self-issued tokens callers present to the
// gateway and puts the verified Identity in the request context.
//
// Checks run cheapest first: metadata (authorization header, Bearer scheme,
// authentication type, size), then the JWS (strict parse, algorithm
// allowlist bound to the key's type, no key-bearing headers, no crit,
// signature through jwx), then the claims (iss, aud, exp/nbf/iat with
// leeway, lifetime cap, jti present and not revoked), and last the
// x-gitlab-* headers against the claims, as the real AI gateway does, plus
// x-gitlab-global-user-id against the gitlab_global_user_id claim when the
// token carries one (the proven user, see Identity).
// Messages copy the real gateway's; every signature or claim failure reads
// "Forbidden by auth provider" so a caller cannot tell which check failed.
// Each rejection is counted by reason.
//
// Failed authentications are bounded per client address (FailureLimiter):
// past the bound, only already-verified tokens are accepted from it.
//
// Tokens that pass are remembered in a bounded cache keyed by the token's
// SHA-256, until the token expires, so a repeated token costs no signature
// check; a cache hit still checks the metadata, the revocation list, that
// the signing key is still published, and the headers against the claims.
package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/keyset"
	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/keypolicy"
	"github.com/airlock-dev/airlock/pkg/token"
)

// Defaults for Config.
const (
	DefaultLeeway        = 30 * time.Second
	DefaultMaxLifetime   = 2 * time.Hour
	DefaultMaxTokenBytes = 8 << 10
	DefaultCacheSize     = 10000
	// MaxGlobalUserIDBytes bounds x-gitlab-global-user-id (GitLab's and
	// Airlock's are 44 bytes of base64).
	MaxGlobalUserIDBytes = 128
)

// KeyLookup finds verification keys. *keyset.Cache satisfies it.
//
// Lookup returns the key for kid, or keyset.ErrUnknownKey when it is not
// published, keyset.ErrNoKeys / keyset.ErrStale when no usable key set is
// loaded (the verifier answers Unavailable), or ctx's error. All returns
// every key, for tokens without a kid (nil when no usable set is loaded).
type KeyLookup interface {
	Lookup(ctx context.Context, kid string) (jwk.Key, error)
	All() []jwk.Key
}

// keyPresence is implemented by key lookups that can tell, without a
// refetch, whether a kid is still published; the verifier then refuses a
// cached token whose key was removed, even if nobody called EvictKey.
type keyPresence interface {
	Has(kid string) bool
}

// Config configures a Verifier. Keys and Issuer are required.
type Config struct {
	// Keys finds verification keys (usually a *keyset.Cache).
	Keys KeyLookup
	// Revoked reports revoked jtis (usually (*revocation.List).Revoked);
	// nil means nothing is revoked.
	Revoked func(jti string) bool
	// Issuer is the exact `iss` every token must carry (the instance URL).
	Issuer string
	// Audience must be in `aud`; default token.Audience.
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat; default 30 s. A
	// negative value means zero.
	Leeway time.Duration
	// MaxLifetime caps exp − iat; default 2 h.
	MaxLifetime time.Duration
	// MaxTokenBytes refuses longer tokens before any parsing; default 8 KiB.
	MaxTokenBytes int
	// CacheSize bounds the verified-token cache; default 10,000 entries,
	// negative disables the cache.
	CacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts rejections by reason; nil counts nothing.
	Metrics *Metrics
	// OnReject, when set, is also called with each rejection's reason.
	OnReject func(reason string)
	// Failures, when set, bounds failed authentications per client
	// address (see FailureLimiter); AuthFunc and VerifyFrom apply it.
	Failures *FailureLimiter
}

// Verifier verifies tokens. It is safe for concurrent use.
type Verifier struct {
	cfg       Config
	verifiers map[string]jws.Verifier
	cache     *tokenCache

	// rawKeys memoises jwk.Key → crypto public key, so a signature check
	// does not rebuild big integers from the JWK on every request.
	rawKeys sync.Map
	rawN    atomic.Int32
}

// NewVerifier checks cfg, applies the defaults and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Keys == nil:
		return nil, errors.New("auth: Config.Keys is required")
	case strings.TrimSpace(cfg.Issuer) == "":
		return nil, errors.New("auth: Config.Issuer is required: tokens from any issuer would be accepted")
	case cfg.MaxTokenBytes < 0 || cfg.MaxLifetime < 0:
		return nil, fmt.Errorf("auth: negative MaxTokenBytes (%d) or MaxLifetime (%s)", cfg.MaxTokenBytes, cfg.MaxLifetime)
	}
	if cfg.Audience == "" {
		cfg.Audience = token.Audience
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	} else if cfg.Leeway < 0 {
		cfg.Leeway = 0
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxTokenBytes == 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Revoked == nil {
		cfg.Revoked = func(string) bool { return false }
	}
	// Only keypolicy's algorithms get a verifier; anything else (none, HS*,
	// PS*, ES384, ...) finds none and is refused, which rules out the
	// classic confusions: "none", and an HMAC keyed with a public key's bytes.
	algs := keypolicy.Algs()
	v := &Verifier{cfg: cfg, verifiers: make(map[string]jws.Verifier, len(algs))}
	for _, alg := range algs {
		jv, err := jws.NewVerifier(jwa.SignatureAlgorithm(alg))
		if err != nil {
			return nil, fmt.Errorf("auth: %s verifier: %w", alg, err)
		}
		v.verifiers[alg] = jv
	}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	return v, nil
}

// AuthFunc authenticates a call from its incoming metadata, for
// go-grpc-middleware's auth interceptor. It returns a child context carrying
// the *Identity, or a status error (see Verify).
func (v *Verifier) AuthFunc(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	client := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		client = connlimit.Key(p.Addr.String())
	}
	id, err := v.VerifyFrom(ctx, client, md)
	if err != nil {
		return nil, err
	}
	return WithIdentity(ctx, id), nil
}

// Verify checks the token and x-gitlab-* values in md. It returns the
// identity (shared and read-only, see Identity), or a status error:
// Unauthenticated with the real gateway's message for every refusal,
// Unavailable when no usable key set is loaded, or Canceled /
// DeadlineExceeded when ctx ends while waiting for a key refetch.
func (v *Verifier) Verify(ctx context.Context, md metadata.MD) (*Identity, error) {
	return v.VerifyFrom(ctx, "", md)
}

// VerifyFrom is Verify for a call from client (a connlimit.Key; "" means
// unknown and unlimited). With Config.Failures set, every Unauthenticated
// refusal counts against its client, and a client that has failed too
// often may present only tokens already in the verified-token cache
// (cheap): anything needing a parse and a signature check is refused with
// ResourceExhausted until its allowance refills. So an abuser behind the
// same address as legitimate users (a NAT, a GitLab instance) cannot make
// the gateway verify, and users whose tokens are already verified go on.
func (v *Verifier) VerifyFrom(ctx context.Context, client string, md metadata.MD) (*Identity, error) {
	return v.verifyAndCount(ctx, client, md, false)
}

// VerifyBearer is VerifyFrom for transports whose callers cannot send the
// x-gitlab-* headers (plain OpenAI SDKs over the HTTP API): md holds the
// request's headers under their lower-case names, and every check runs as
// in Verify, except that an absent x-gitlab-authentication-type,
// x-gitlab-realm, x-gitlab-instance-id or x-gitlab-global-user-id is not a
// refusal (the verified claims stand in for it, so a token that binds its
// user is still keyed on the proven value). A header that is sent must
// still match exactly, with the same messages. Errors are Verify's.
func (v *Verifier) VerifyBearer(ctx context.Context, client string, md metadata.MD) (*Identity, error) {
	return v.verifyAndCount(ctx, client, md, true)
}

func (v *Verifier) verifyAndCount(ctx context.Context, client string, md metadata.MD, headersOptional bool) (*Identity, error) {
	id, rej, err := v.verify(ctx, md, client, headersOptional)
	if rej != nil && rej.code == codes.Unauthenticated {
		v.cfg.Failures.Failed(client)
	}
	if rej != nil {
		v.cfg.Metrics.inc(rej.reason)
		if v.cfg.OnReject != nil {
			v.cfg.OnReject(rej.reason)
		}
		return nil, rej.toStatus()
	}
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return id, nil
}

// Evict drops cached verifications of the token with this jti. Revocation
// is checked on every request anyway; eviction frees the memory at once.
func (v *Verifier) Evict(jti string) {
	if v.cache != nil {
		v.cache.evict(func(e *cacheEntry) bool { return e.id.JTI == jti })
	}
}

// EvictKey drops cached verifications of tokens signed by the key kid,
// for when that key leaves the published set.
func (v *Verifier) EvictKey(kid string) {
	if v.cache != nil {
		v.cache.evict(func(e *cacheEntry) bool { return e.kid == kid })
	}
	// A removed key's memoised raw form is harmless but useless.
	v.rawKeys.Range(func(k, _ any) bool {
		if k.(jwk.Key).KeyID() == kid {
			v.rawKeys.Delete(k)
		}
		return true
	})
}

// requestMD holds the metadata values the checks use.
type requestMD struct {
	token, instanceID, realm, globalUserID string
	// realmAbsent, instanceAbsent and guAbsent: the header was not sent
	// and the transport makes it optional (VerifyBearer); the claims stand
	// in.
	realmAbsent, instanceAbsent, guAbsent bool
}

func (v *Verifier) verify(ctx context.Context, md metadata.MD, client string, headersOptional bool) (*Identity, *rejection, error) {
	var r requestMD
	if headersOptional {
		md = r.optional(md)
	}
	if rej := v.readMetadata(md, &r); rej != nil {
		return nil, rej, nil
	}
	now := v.cfg.Now()

	var d [32]byte
	if v.cache != nil {
		d = digest(r.token)
		if id, rej, hit := v.fromCache(&d, &r, now); hit {
			return id, rej, nil
		}
	}

	if v.cfg.Failures.Blocked(client) {
		return nil, rejThrottled, nil
	}
	parts, err := splitJWS(r.token)
	if err != nil {
		return nil, rejMalformed, nil
	}
	kid, rej, err := v.checkSignature(ctx, parts)
	if rej != nil || err != nil {
		return nil, rej, err
	}
	c, err := parseClaims(parts.payload)
	if err != nil {
		return nil, rejMalformed, nil
	}
	if rej := v.checkClaims(c, now); rej != nil {
		return nil, rej, nil
	}
	if c.hasGlobalUserID && c.globalUserID == "" {
		// An empty binding would prove "no user"; never issued, so refused.
		return nil, rejMissingClaim, nil
	}
	b := binding{realm: c.realm, sub: c.sub, instClaim: c.instanceID, hasInst: c.hasInstanceID,
		guClaim: c.globalUserID, hasGU: c.hasGlobalUserID}
	if rej := checkHeaders(&b, &r); rej != nil {
		return nil, rej, nil
	}
	if r.instanceAbsent {
		r.instanceID = c.sub
	}
	id := &Identity{
		JTI:              c.jti,
		Subject:          c.sub,
		InstanceID:       r.instanceID,
		Realm:            c.realm,
		GlobalUserID:     r.globalUserID,
		GlobalUserProven: c.hasGlobalUserID,
		Scopes:           c.scopes,
		Expiry:           c.exp,
		IssuedAt:         c.iat,
	}
	if v.cache != nil {
		v.cache.put(&d, &cacheEntry{
			id: id, kid: kid, instanceID: c.instanceID, hasInstID: c.hasInstanceID,
			globalUserID: c.globalUserID, hasGU: c.hasGlobalUserID,
			expires: c.exp.UnixNano(),
		}, now)
	}
	return id, nil, nil
}

// optional records which x-gitlab-* headers the request left out, for a
// transport that makes them optional, and returns md with the
// authentication type the transport implies.
func (r *requestMD) optional(md metadata.MD) metadata.MD {
	if len(md.Get(token.MDAuthType)) == 0 {
		md = withValue(md, token.MDAuthType, token.AuthTypeOIDC)
	}
	r.realmAbsent = len(md.Get(token.MDRealm)) == 0
	r.instanceAbsent = len(md.Get(token.MDInstanceID)) == 0
	r.guAbsent = len(md.Get(token.MDGlobalUserID)) == 0
	return md
}

// fromCache answers from the verified-token cache: hit is false when the
// token is not cached (or its key has left the set) and the full path must
// run.
func (v *Verifier) fromCache(d *[32]byte, r *requestMD, now time.Time) (_ *Identity, _ *rejection, hit bool) {
	e := v.cache.get(d, now)
	if e == nil || !v.keyStillPublished(e.kid) {
		return nil, nil, false
	}
	if rej := v.checkCached(e, r); rej != nil {
		return nil, rej, true
	}
	id := e.id
	// With the claim, the header equals it (checked above); without it, the
	// identity carries whatever this request forwarded.
	if id.GlobalUserID != r.globalUserID {
		cp := *id
		cp.GlobalUserID = r.globalUserID
		id = &cp
	}
	return id, nil, true
}

// readMetadata runs the metadata checks, in the real gateway's order.
func (v *Verifier) readMetadata(md metadata.MD, r *requestMD) *rejection {
	authz := md.Get(token.MDAuthorization)
	if len(authz) == 0 {
		return rejNoAuthorization
	}
	if len(authz) != 1 {
		return rejBadAuthorization
	}
	tok, ok := bearer.Parse(authz[0])
	if !ok {
		return rejBadAuthorization
	}
	if t := md.Get(token.MDAuthType); len(t) != 1 || t[0] != token.AuthTypeOIDC {
		return rejBadAuthType
	}
	if len(tok) > v.cfg.MaxTokenBytes {
		return rejTooLarge
	}
	r.token = tok
	r.instanceID = single(md, token.MDInstanceID)
	r.realm = single(md, token.MDRealm)
	r.globalUserID = single(md, token.MDGlobalUserID)
	if len(r.globalUserID) > MaxGlobalUserIDBytes {
		// Never a real value; refused so that, from a token without the
		// claim, it cannot become a huge limiter key or log field.
		return rejGlobalUserMismatch
	}
	return nil
}

// single returns the only value of key, or "" when it is absent or
// repeated: a repeated header is ambiguous, and "" never matches a claim.
func single(md metadata.MD, key string) string {
	if vs := md.Get(key); len(vs) == 1 {
		return vs[0]
	}
	return ""
}

// checkCached re-runs, on a cache hit, the checks that depend on the
// request or on state that can change after the token was first verified.
func (v *Verifier) checkCached(e *cacheEntry, r *requestMD) *rejection {
	if v.cfg.Revoked(e.id.JTI) {
		return rejRevoked
	}
	return checkHeaders(&binding{realm: e.id.Realm, sub: e.id.Subject, instClaim: e.instanceID, hasInst: e.hasInstID,
		guClaim: e.globalUserID, hasGU: e.hasGU}, r)
}

// keyStillPublished reports whether a cached verification may be used:
// false when the key that verified it has left the set, or when the set is
// unusable (stale or gone). The full path then runs and answers precisely
// (Forbidden for a removed key, Unavailable for a stale set), so a cache hit
// never accepts what the full path would refuse.
func (v *Verifier) keyStillPublished(kid string) bool {
	kp, ok := v.cfg.Keys.(keyPresence)
	return !ok || kid == "" || kp.Has(kid)
}

// checkSignature resolves the key and verifies the signature. It returns
// the kid of the key that verified the token.
func (v *Verifier) checkSignature(ctx context.Context, p *jwsParts) (string, *rejection, error) {
	if p.header.untrusted {
		return "", rejBadHeader, nil
	}
	jv, ok := v.verifiers[p.header.alg]
	if !ok {
		return "", rejBadAlgorithm, nil
	}
	input := []byte(p.signingInput)
	if p.header.kid != "" {
		key, err := v.cfg.Keys.Lookup(ctx, p.header.kid)
		switch {
		case errors.Is(err, keyset.ErrUnknownKey):
			return "", rejUnknownKey, nil
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
			return "", nil, err
		case err != nil:
			// ErrNoKeys, ErrStale, or a lookup failure: nothing can be
			// verified, which is the gateway's problem, not the caller's.
			return "", rejNoKeys, nil
		}
		pub, ok := v.keyFor(key, p.header.alg)
		if !ok {
			return "", rejBadAlgorithm, nil
		}
		if jv.Verify(input, p.signature, pub) != nil {
			return "", rejBadSignature, nil
		}
		return key.KeyID(), nil, nil
	}
	// No kid, as older GitLab versions send: try every key of the right
	// type. Key sets are a handful of keys, so this stays cheap.
	all := v.cfg.Keys.All()
	if len(all) == 0 {
		return "", rejNoKeys, nil
	}
	tried := false
	for _, key := range all {
		pub, ok := v.keyFor(key, p.header.alg)
		if !ok {
			continue
		}
		tried = true
		if jv.Verify(input, p.signature, pub) == nil {
			return key.KeyID(), nil, nil
		}
	}
	if !tried {
		return "", rejBadAlgorithm, nil
	}
	return "", rejBadSignature, nil
}

// keyFor returns key's public key if it may verify alg: the key's own alg
// (when it declares one) must match, and its type and size must be the ones
// keypolicy binds alg to. This is what stops algorithm confusion.
func (v *Verifier) keyFor(key jwk.Key, alg string) (crypto.PublicKey, bool) {
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg {
		return nil, false
	}
	pub := v.raw(key)
	if pub == nil || !keypolicy.Matches(alg, pub) {
		return nil, false
	}
	return pub, true
}

func (v *Verifier) raw(key jwk.Key) crypto.PublicKey {
	if p, ok := v.rawKeys.Load(key); ok {
		return p
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		return nil
	}
	// Key sets are small; the bound only guards against a source that
	// churns keys forever.
	if v.rawN.Add(1) > 256 {
		v.rawKeys.Clear()
		v.rawN.Store(0)
	}
	v.rawKeys.Store(key, raw)
	return raw
}

func (v *Verifier) checkClaims(c *claims, now time.Time) *rejection {
	lw := v.cfg.Leeway
	switch {
	case c.iss != v.cfg.Issuer:
		return rejBadIssuer
	case !contains(c.aud, v.cfg.Audience):
		return rejBadAudience
	case !c.hasExp || !c.hasIat || c.jti == "" || c.sub == "" || c.realm == "":
		return rejMissingClaim
	case !now.Before(c.exp.Add(lw)):
		return rejExpired
	case c.hasNbf && now.Add(lw).Before(c.nbf), now.Add(lw).Before(c.iat):
		return rejNotYetValid
	case c.exp.Sub(c.iat) > v.cfg.MaxLifetime, !c.exp.After(c.iat):
		return rejLifetime
	case v.cfg.Revoked(c.jti):
		return rejRevoked
	}
	return nil
}

// binding is what a token's claims say the forwarded headers must be.
type binding struct {
	realm, sub, instClaim, guClaim string
	hasInst, hasGU                 bool
}

// checkHeaders compares the forwarded x-gitlab-* values with the claims,
// as the real gateway does: realm first, then the instance id (sub, and
// gitlab_instance_id when the token has it), then the global user id when
// the token binds one (a missing or repeated header is "" and mismatches).
// A header the transport made optional and the caller left out takes the
// claim's value (r is updated), so the identity carries the proven user.
func checkHeaders(b *binding, r *requestMD) *rejection {
	if !r.realmAbsent && b.realm != r.realm {
		return rejRealmMismatch
	}
	inst := r.instanceID
	if r.instanceAbsent {
		inst = b.sub
	}
	if b.sub != inst || (b.hasInst && b.instClaim != inst) {
		return rejInstanceMismatch
	}
	if b.hasGU {
		if r.guAbsent {
			r.globalUserID = b.guClaim
		} else if b.guClaim != r.globalUserID {
			return rejGlobalUserMismatch
		}
	}
	return nil
}

// withValue returns a copy of md with key set to value.
func withValue(md metadata.MD, key, value string) metadata.MD {
	cp := md.Copy()
	cp.Set(key, value)
	return cp
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
