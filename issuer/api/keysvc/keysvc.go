// Package keysvc implements issuerv1.KeyService: the public key set by
// request and by watch, and forced rotation for administrators.
package keysvc

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/issuer/api/apierr"
	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/broadcast"
	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// Keys is the part of keys.Manager the service uses.
type Keys interface {
	KeySet() *keys.KeySet
	Hub() *broadcast.Hub[*keys.KeySet]
	Rotate(ctx context.Context) (*keys.KeySet, error)
}

// Config configures New.
type Config struct {
	Keys   Keys
	Logger zerolog.Logger
}

// Service implements issuerv1.KeyServiceServer.
type Service struct {
	issuerv1.UnsafeKeyServiceServer
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service { return &Service{cfg: cfg} }

// Register registers s on r.
func (s *Service) Register(r grpc.ServiceRegistrar) { issuerv1.RegisterKeyServiceServer(r, s) }

// PublicMethods are the KeyService methods that need no credentials.
var PublicMethods = []string{issuerv1.KeyService_GetKeys_FullMethodName, issuerv1.KeyService_WatchKeys_FullMethodName}

// ToProto converts a key set to its API form.
func ToProto(ks *keys.KeySet) *issuerv1.KeySet {
	out := &issuerv1.KeySet{Revision: ks.Revision, Jwks: ks.JWKS, UpdateTime: ts(ks.UpdateTime)}
	for _, k := range ks.Keys {
		out.Keys = append(out.Keys, &issuerv1.KeyInfo{
			Kid: k.KID, Alg: k.Alg, State: issuerv1.KeyState(k.State), CreateTime: ts(k.CreateTime), //nolint:gosec // G115: a small closed enum
			ActivateTime: ts(k.ActivateTime), RetireTime: ts(k.RetireTime), ExpireTime: ts(k.ExpireTime),
		})
	}
	return out
}

// ts converts t, leaving zero times unset as the API documents.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (s *Service) current() (*keys.KeySet, error) {
	ks := s.cfg.Keys.KeySet()
	if ks == nil {
		return nil, status.Error(codes.Unavailable, "no keys loaded yet")
	}
	return ks, nil
}

// GetKeys returns the current key set.
func (s *Service) GetKeys(context.Context, *issuerv1.GetKeysRequest) (*issuerv1.GetKeysResponse, error) {
	ks, err := s.current()
	if err != nil {
		return nil, err
	}
	return &issuerv1.GetKeysResponse{KeySet: ToProto(ks)}, nil
}

// WatchKeys sends the key set now (unless the client holds it) and after
// every change, until the client goes away.
func (s *Service) WatchKeys(req *issuerv1.WatchKeysRequest, stream grpc.ServerStreamingServer[issuerv1.WatchKeysResponse]) error {
	hub := s.cfg.Keys.Hub()
	sub := hub.Subscribe()
	defer sub.Close()
	last := req.GetKnownRevision()
	for {
		if rev, ks := hub.Current(); ks != nil && rev != last {
			if err := stream.Send(&issuerv1.WatchKeysResponse{KeySet: ToProto(ks)}); err != nil {
				return err
			}
			last = rev
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-sub.C():
		}
	}
}

// RotateKeys forces a rotation. Administrators only.
func (s *Service) RotateKeys(ctx context.Context, _ *issuerv1.RotateKeysRequest) (*issuerv1.RotateKeysResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	ks, err := s.cfg.Keys.Rotate(ctx)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	return &issuerv1.RotateKeysResponse{KeySet: ToProto(ks)}, nil
}

var _ issuerv1.KeyServiceServer = (*Service)(nil)
