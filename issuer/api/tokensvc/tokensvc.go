// Package tokensvc implements issuerv1.TokenService: minting for users,
// revocation by administrators or the token's owner, and the revocation
// watch the gateways follow.
package tokensvc

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/issuer/api/apierr"
	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/broadcast"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/echo"
)

// Minter mints tokens (minter.Minter).
type Minter interface {
	Mint(ctx context.Context, u store.User, features []string, ttl time.Duration) (*minter.Token, error)
}

// Store is the part of store.Store the service uses.
type Store interface {
	GetToken(ctx context.Context, jti string) (store.IssuedToken, error)
	Revoke(ctx context.Context, r store.Revocation) (store.Revocation, bool, error)
	ListRevocations(ctx context.Context) ([]store.Revocation, uint64, error)
	PruneTokens(ctx context.Context, now time.Time) (int, error)
}

// Limiter rate-limits minting per user: *limits.Rate in one process, or
// *pgstore.Rate shared by every replica on one database. nil allows all.
type Limiter interface {
	// Take reports whether key may act now and records the event if so.
	// An error (the shared store unreachable) refuses the call.
	Take(ctx context.Context, key string) (bool, error)
	PerMinute() int
}

// Config configures New.
type Config struct {
	Minter   Minter
	Store    Store
	MintRate Limiter
	Now      func() time.Time
	Logger   zerolog.Logger
}

// Service implements issuerv1.TokenServiceServer.
type Service struct {
	issuerv1.UnsafeTokenServiceServer
	cfg Config
	hub broadcast.Hub[[]store.Revocation]
}

// New loads the stored revocations and returns the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg}
	if err := s.reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Register registers s on r.
func (s *Service) Register(r grpc.ServiceRegistrar) { issuerv1.RegisterTokenServiceServer(r, s) }

// Reload republishes the revocations from the store: how a replica follows
// a revocation made through another replica (issuer/follow). A revision
// not newer than the published one changes nothing.
func (s *Service) Reload(ctx context.Context) error { return s.reload(ctx) }

// Revision returns the published revocation list's revision.
func (s *Service) Revision() uint64 {
	rev, _ := s.hub.Current()
	return rev
}

func (s *Service) reload(ctx context.Context) error {
	list, rev, err := s.cfg.Store.ListRevocations(ctx)
	if err != nil {
		return err
	}
	s.hub.Publish(rev, list)
	return nil
}

// Run prunes expired tokens and revocations every interval until ctx is
// done: a revocation is useless once its token has expired anyway.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Prune(ctx); err != nil {
				s.cfg.Logger.Error().Err(err).Msg("pruning expired tokens failed")
			}
		}
	}
}

// Prune deletes expired tokens and revocations now.
func (s *Service) Prune(ctx context.Context) error {
	n, err := s.cfg.Store.PruneTokens(ctx, s.cfg.Now())
	if err != nil || n == 0 {
		return err
	}
	return s.reload(ctx)
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// MintToken mints a token for the calling user (ROLE_USER or ROLE_ADMIN).
func (s *Service) MintToken(ctx context.Context, req *issuerv1.MintTokenRequest) (*issuerv1.MintTokenResponse, error) {
	id, err := authn.Require(ctx, store.RoleUser, store.RoleAdmin)
	if err != nil {
		return nil, err
	}
	if s.cfg.MintRate != nil {
		ok, err := s.cfg.MintRate.Take(ctx, "user:"+id.Username)
		if err != nil {
			return nil, apierr.Status(s.cfg.Logger, err)
		}
		if !ok {
			return nil, status.Errorf(codes.ResourceExhausted, "mint rate limit exceeded for this user (%d per minute)", s.cfg.MintRate.PerMinute())
		}
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "ttl: invalid duration")
		}
		if ttl = req.GetTtl().AsDuration(); ttl <= 0 {
			return nil, status.Error(codes.InvalidArgument, "ttl: must be positive")
		}
	}
	u := store.User{ID: id.UserID, Username: id.Username, Role: id.Role, Features: id.Features}
	tok, err := s.cfg.Minter.Mint(ctx, u, req.GetFeatures(), ttl)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	zerolog.Ctx(ctx).Debug().Str("jti", tok.Claims.ID).Str("user", id.Username).Msg("token minted")
	return &issuerv1.MintTokenResponse{
		Token: tok.JWT, Jti: tok.Claims.ID, ExpireTime: ts(tok.Claims.Expiry.Time()),
		Scopes: tok.Claims.Scopes, Metadata: tok.Metadata,
	}, nil
}

// RevokeToken revokes a token by jti: administrators any, users their own.
func (s *Service) RevokeToken(ctx context.Context, req *issuerv1.RevokeTokenRequest) (*issuerv1.RevokeTokenResponse, error) {
	id, err := authn.Require(ctx, store.RoleUser, store.RoleAdmin)
	if err != nil {
		return nil, err
	}
	if req.GetJti() == "" {
		return nil, status.Error(codes.InvalidArgument, "jti: required")
	}
	tok, err := s.cfg.Store.GetToken(ctx, req.GetJti())
	if errors.Is(err, store.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "token %s not found (unknown or already expired)", echo.Quote(req.GetJti()))
	}
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	if id.Role != store.RoleAdmin && tok.UserID != id.UserID {
		return nil, status.Error(codes.PermissionDenied, "permission denied: users may revoke only their own tokens")
	}
	r, created, err := s.cfg.Store.Revoke(ctx, store.Revocation{JTI: tok.JTI, ExpireTime: tok.ExpireTime, RevokeTime: s.cfg.Now()})
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	if created {
		if err := s.reload(ctx); err != nil {
			// Stored durably; watchers catch up on the next change or reconnect.
			s.cfg.Logger.Error().Err(err).Msg("publishing revocation failed")
		}
	}
	return &issuerv1.RevokeTokenResponse{Revocation: toProto(r)}, nil
}

func toProto(r store.Revocation) *issuerv1.Revocation {
	return &issuerv1.Revocation{Jti: r.JTI, ExpireTime: ts(r.ExpireTime), RevokeTime: ts(r.RevokeTime)}
}

// WatchRevocations streams revocations (ROLE_GATEWAY or ROLE_ADMIN): every
// unexpired one first (possibly an empty batch, so the client knows it is in
// sync), then each batch of new ones.
func (s *Service) WatchRevocations(_ *issuerv1.WatchRevocationsRequest, stream grpc.ServerStreamingServer[issuerv1.WatchRevocationsResponse]) error {
	ctx := stream.Context()
	if _, err := authn.Require(ctx, store.RoleGateway, store.RoleAdmin); err != nil {
		return err
	}
	sub := s.hub.Subscribe()
	defer sub.Close()
	var lastSeq uint64
	first := true
	for {
		_, list := s.hub.Current()
		now := s.cfg.Now()
		resp := &issuerv1.WatchRevocationsResponse{}
		for _, r := range list {
			if r.Seq > lastSeq {
				lastSeq = r.Seq
				if r.ExpireTime.After(now) {
					resp.Revocations = append(resp.Revocations, toProto(r))
				}
			}
		}
		if first || len(resp.Revocations) > 0 {
			if err := stream.Send(resp); err != nil {
				return err
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-sub.C():
		}
	}
}

var _ issuerv1.TokenServiceServer = (*Service)(nil)
