// Package usersvc implements issuerv1.UserService: users and their personal
// access tokens, for administrators.
package usersvc

import (
	"context"
	"regexp"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/issuer/api/apierr"
	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/echo"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// DefaultPATLifetime applies when CreatePersonalAccessToken sets no expiry.
const DefaultPATLifetime = 30 * 24 * time.Hour

// Store is the part of store.Store the service uses.
type Store interface {
	CreateUser(ctx context.Context, u store.User, maxUsers int) (store.User, error)
	GetUser(ctx context.Context, username string) (store.User, error)
	ListUsers(ctx context.Context) ([]store.User, error)
	CreatePAT(ctx context.Context, p store.PAT) error
	RevokePAT(ctx context.Context, id string, at time.Time) (store.PAT, error)
}

// Config configures New.
type Config struct {
	Store  Store
	Now    func() time.Time
	Logger zerolog.Logger
	// MaxUsers bounds the principals (0: unlimited); the store enforces it
	// inside the create's transaction.
	MaxUsers int
}

// Service implements issuerv1.UserServiceServer. Every method needs ROLE_ADMIN.
type Service struct {
	issuerv1.UnsafeUserServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Register registers s on r.
func (s *Service) Register(r grpc.ServiceRegistrar) { issuerv1.RegisterUserServiceServer(r, s) }

var usernameRE = regexp.MustCompile(`^[a-z0-9_.-]{1,63}$`)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// ValidateUser checks a new user's fields; the error is InvalidArgument.
func ValidateUser(u *issuerv1.User) error {
	if !usernameRE.MatchString(u.GetUsername()) {
		return status.Errorf(codes.InvalidArgument, "username: %s is not 1-63 characters of [a-z0-9_.-]", echo.Quote(u.GetUsername()))
	}
	switch u.GetRole() {
	case issuerv1.Role_ROLE_USER, issuerv1.Role_ROLE_ADMIN, issuerv1.Role_ROLE_GATEWAY:
	default:
		return status.Error(codes.InvalidArgument, "role: must be ROLE_USER, ROLE_ADMIN or ROLE_GATEWAY")
	}
	for i, f := range u.GetEntitledFeatures() {
		if _, err := feature.Parse(f); err != nil {
			return status.Errorf(codes.InvalidArgument, "entitled_features[%d]: %v", i, err)
		}
	}
	return nil
}

// UserToProto converts a stored user.
func UserToProto(u store.User) *issuerv1.User {
	return &issuerv1.User{Username: u.Username, Id: u.ID, Role: issuerv1.Role(u.Role), EntitledFeatures: u.Features, CreateTime: ts(u.CreateTime)} //nolint:gosec // G115: Role is a small closed enum
}

// PATToProto converts a stored PAT (never its hash).
func PATToProto(p store.PAT) *issuerv1.PersonalAccessToken {
	return &issuerv1.PersonalAccessToken{Id: p.ID, Username: p.Username, ExpireTime: ts(p.ExpireTime), RevokeTime: ts(p.RevokeTime), CreateTime: ts(p.CreateTime)}
}

// CreateUser adds a user; ResourceExhausted once MaxUsers exist.
func (s *Service) CreateUser(ctx context.Context, req *issuerv1.CreateUserRequest) (*issuerv1.CreateUserResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	if err := ValidateUser(req.GetUser()); err != nil {
		return nil, err
	}
	u, err := s.cfg.Store.CreateUser(ctx, store.User{
		Username: req.GetUser().GetUsername(), Role: store.Role(req.GetUser().GetRole()),
		Features: req.GetUser().GetEntitledFeatures(), CreateTime: s.cfg.Now(),
	}, s.cfg.MaxUsers)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	return &issuerv1.CreateUserResponse{User: UserToProto(u)}, nil
}

// ListUsers lists users ordered by username.
func (s *Service) ListUsers(ctx context.Context, _ *issuerv1.ListUsersRequest) (*issuerv1.ListUsersResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	us, err := s.cfg.Store.ListUsers(ctx)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	resp := &issuerv1.ListUsersResponse{}
	for _, u := range us {
		resp.Users = append(resp.Users, UserToProto(u))
	}
	return resp, nil
}

// CreatePersonalAccessToken issues a PAT; the secret is in this answer only.
func (s *Service) CreatePersonalAccessToken(ctx context.Context, req *issuerv1.CreatePersonalAccessTokenRequest) (*issuerv1.CreatePersonalAccessTokenResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	exp := now.Add(DefaultPATLifetime)
	if req.GetExpireTime() != nil {
		if err := req.GetExpireTime().CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "expire_time: invalid timestamp")
		}
		if exp = req.GetExpireTime().AsTime(); !exp.After(now) {
			return nil, status.Error(codes.InvalidArgument, "expire_time: must be in the future")
		}
	}
	u, err := s.cfg.Store.GetUser(ctx, req.GetUsername())
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	p, secret, err := pat.Issue(ctx, s.cfg.Store, u, now, exp)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	return &issuerv1.CreatePersonalAccessTokenResponse{Token: PATToProto(p), Secret: secret}, nil
}

// RevokePersonalAccessToken revokes a PAT by id; it stops working at once.
func (s *Service) RevokePersonalAccessToken(ctx context.Context, req *issuerv1.RevokePersonalAccessTokenRequest) (*issuerv1.RevokePersonalAccessTokenResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "id: required")
	}
	p, err := s.cfg.Store.RevokePAT(ctx, req.GetId(), s.cfg.Now())
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	return &issuerv1.RevokePersonalAccessTokenResponse{Token: PATToProto(p)}, nil
}

var _ issuerv1.UserServiceServer = (*Service)(nil)
