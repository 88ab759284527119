// Package authn authenticates issuer callers by personal access token (PAT)
// and checks their role. What a PAT is (its shape, its stored hash, the
// constant-time check) is package pat's; this package reads the bearer
// credential, looks the token up and decides.
package authn

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
	"github.com/airlock-dev/airlock/pkg/token"
)

// Messages of authentication failures. Every invalid PAT (unknown, expired,
// revoked, owner deleted) gets the same message, so a caller learns nothing
// about which tokens exist.
const (
	MsgMissing = "missing personal access token: send authorization: Bearer <token>"
	MsgInvalid = "invalid personal access token"
)

// Identity is the authenticated caller.
type Identity struct {
	UserID   uint64
	Username string
	Role     store.Role
	Features []string // entitled features
	PATID    string
	// PATCreateTime and PATExpireTime describe the PAT used (zero for a
	// certificate identity).
	PATCreateTime, PATExpireTime time.Time
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the caller's identity, if authenticated.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

// Lookup is the part of the store the authenticator reads.
type Lookup interface {
	GetPATByHash(ctx context.Context, hash []byte) (store.PAT, error)
	GetUserByID(ctx context.Context, id uint64) (store.User, error)
}

// Option configures New.
type Option func(*options)

type options struct{ gatewayCert string }

// WithGatewayCertificate makes a caller without a bearer token whose
// mutual-TLS client certificate carries identity (its first URI SAN, e.g.
// spiffe://airlock/gateway, or else its common name; verified against the
// server's client CAs) the gateway's service identity (ROLE_GATEWAY). Empty
// disables it.
func WithGatewayCertificate(identity string) Option {
	return func(o *options) { o.gatewayCert = identity }
}

// New returns an AuthFunc for pkg/rpcserver: it reads `authorization:
// Bearer <pat>` in pkg/bearer's form (one space, no white space around the
// PAT; anything else counts as no PAT), checks it with pats from the
// caller's peer address, and returns a context carrying the Identity, or
// Unauthenticated (a malformed PAT is refused without a store lookup), or
// ResourceExhausted while the address is locked out. A store failure is Unavailable (fail closed, but tell the
// caller to retry rather than that its credentials are bad). A bearer token,
// when present, always decides; the gateway certificate counts only without
// one.
func New(pats *PATs, opts ...Option) auth.AuthFunc {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return func(ctx context.Context) (context.Context, error) {
		presented, ok := bearerPAT(ctx)
		if !ok {
			if o.gatewayCert != "" {
				if id, ok := tlsconfig.PeerIdentity(ctx); ok && id == o.gatewayCert {
					return WithIdentity(ctx, Identity{Username: "gateway", Role: store.RoleGateway, PATID: "certificate:" + id}), nil
				}
			}
			return nil, status.Error(codes.Unauthenticated, MsgMissing)
		}
		var from string
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			from = p.Addr.String()
		}
		id, err := pats.Check(ctx, from, presented)
		switch {
		case errors.Is(err, ErrInvalidPAT):
			return nil, status.Error(codes.Unauthenticated, MsgInvalid)
		case errors.Is(err, ErrLockedOut):
			return nil, status.Error(codes.ResourceExhausted, MsgLockedOut)
		case err != nil:
			return nil, status.Error(codes.Unavailable, "credential store unavailable")
		}
		return WithIdentity(ctx, id), nil
	}
}

// Errors of PATs.Check (and ErrLockedOut).
var (
	// ErrInvalidPAT: the PAT is malformed, unknown, expired, revoked, or
	// its owner was deleted (one error for all, see MsgInvalid).
	ErrInvalidPAT = errors.New(MsgInvalid)
	// ErrStoreUnavailable: the store could not be read; the caller should
	// retry rather than conclude its credentials are bad.
	ErrStoreUnavailable = errors.New("credential store unavailable")
)

// PATs checks personal access tokens against the store: the one lookup
// behind both the gRPC authenticator (New) and the instance REST API, and
// the one Lockout of both.
type PATs struct {
	l       Lookup
	now     func() time.Time
	lockout *Lockout
	onLock  func(from string)
}

// NewPATs returns a checker reading l, with now as the clock, limiting the
// invalid PATs of each address with lockout (nil: no limit).
func NewPATs(l Lookup, now func() time.Time, lockout *Lockout) *PATs {
	return &PATs{l: l, now: now, lockout: lockout}
}

// OnLockout sets f to be called with the caller's address each time an
// invalid PAT locks an address out (to log it; f must not block).
func (c *PATs) OnLockout(f func(from string)) { c.onLock = f }

// RetryAfter returns how long the address from must wait before a PAT it
// presents is looked at again (0: now).
func (c *PATs) RetryAfter(from string) time.Duration { return c.lockout.RetryAfter(from, c.now()) }

// Check returns the identity owning the presented PAT (the credential
// itself, without any scheme), presented from the address from (an
// "ip:port"). A malformed PAT is refused without a store lookup, and so is
// every PAT from an address locked out. Errors: ErrInvalidPAT (counted
// against from), ErrLockedOut, or ErrStoreUnavailable (wrapping the store's
// error).
func (c *PATs) Check(ctx context.Context, from, presented string) (Identity, error) {
	now := c.now()
	if c.lockout.RetryAfter(from, now) > 0 {
		return Identity{}, ErrLockedOut
	}
	id, err := c.check(ctx, presented)
	if errors.Is(err, ErrInvalidPAT) && c.lockout.Failed(from, now) && c.onLock != nil {
		c.onLock(from)
	}
	return id, err
}

func (c *PATs) check(ctx context.Context, presented string) (Identity, error) {
	secret, err := pat.Parse(presented)
	if err != nil {
		return Identity{}, ErrInvalidPAT
	}
	p, err := c.l.GetPATByHash(ctx, pat.Hash(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, ErrInvalidPAT
	}
	if err != nil {
		return Identity{}, errors.Join(ErrStoreUnavailable, err)
	}
	// The lookup is by hash; verify again in constant time so the
	// decision never depends on a variable-time byte comparison.
	if !pat.Verify(secret, p.Hash) || !p.RevokeTime.IsZero() || !c.now().Before(p.ExpireTime) {
		return Identity{}, ErrInvalidPAT
	}
	u, err := c.l.GetUserByID(ctx, p.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, ErrInvalidPAT
	}
	if err != nil {
		return Identity{}, errors.Join(ErrStoreUnavailable, err)
	}
	return Identity{UserID: u.ID, Username: u.Username, Role: u.Role, Features: u.Features, PATID: p.ID,
		PATCreateTime: p.CreateTime, PATExpireTime: p.ExpireTime}, nil
}

// bearerPAT returns the PAT of the one authorization value, if it is one.
func bearerPAT(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(token.MDAuthorization)
	if len(vals) != 1 {
		return "", false
	}
	return bearer.Parse(vals[0])
}

// RoleName returns the API name of a role, for messages.
func RoleName(r store.Role) string {
	switch r {
	case store.RoleUser:
		return "ROLE_USER"
	case store.RoleAdmin:
		return "ROLE_ADMIN"
	case store.RoleGateway:
		return "ROLE_GATEWAY"
	}
	return "ROLE_UNSPECIFIED"
}

// Require returns the caller's identity if its role is one of roles;
// otherwise PermissionDenied naming the roles allowed (or Unauthenticated if
// the call was not authenticated at all, which means a wiring bug: fail
// closed).
func Require(ctx context.Context, roles ...store.Role) (Identity, error) {
	id, ok := FromContext(ctx)
	if !ok {
		return Identity{}, status.Error(codes.Unauthenticated, MsgMissing)
	}
	for _, r := range roles {
		if id.Role == r {
			return id, nil
		}
	}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = RoleName(r)
	}
	return Identity{}, status.Errorf(codes.PermissionDenied, "permission denied: requires %s", strings.Join(names, " or "))
}
