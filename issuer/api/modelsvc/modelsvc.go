// Package modelsvc implements issuerv1.ModelService: the administrator's
// self-hosted models and feature settings, and the watch that keeps every
// gateway's copy current. API keys are write-only: sealed with the KEK
// before they are stored, cleared from every read answer, and delivered in
// clear only on WatchModels to the gateway's service identity.
package modelsvc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/issuer/api/apierr"
	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/broadcast"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/modelcheck"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/echo"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Store is the part of store.Store the service uses.
type Store interface {
	CreateModel(ctx context.Context, m store.Model, maxModels int) error
	UpdateModel(ctx context.Context, name string, update func(old store.Model) (store.Model, error)) (store.Model, error)
	GetModel(ctx context.Context, name string) (store.Model, error)
	DeleteModel(ctx context.Context, name string) error
	SetFeatureSetting(ctx context.Context, s store.FeatureSetting) error
	ModelConfig(ctx context.Context) (store.ModelConfig, error)
}

// Config configures New.
type Config struct {
	Store  Store
	KEK    *kek.KEK
	Now    func() time.Time
	Logger zerolog.Logger
	// MaxModels bounds the registry (0: unlimited); the configuration is
	// pushed whole to every gateway on each change. The store enforces it
	// inside the create's transaction.
	MaxModels int
}

// Service implements issuerv1.ModelServiceServer.
type Service struct {
	issuerv1.UnsafeModelServiceServer
	cfg Config
	hub broadcast.Hub[*issuerv1.WatchModelsResponse]
}

// New loads the configuration (every stored API key must decrypt) and
// returns the service.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg}
	if err := s.publish(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Register registers s on r.
func (s *Service) Register(r grpc.ServiceRegistrar) { issuerv1.RegisterModelServiceServer(r, s) }

func aad(name string) []byte { return []byte("airlock/model-api-key/" + name) }

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// toProto converts a stored model; the API key is never included.
func toProto(m store.Model) *issuerv1.Model {
	return &issuerv1.Model{
		Name: m.Name, Family: m.Family, Provider: m.Provider, Endpoint: m.Endpoint, Identifier: m.Identifier,
		HasApiKey: len(m.SealedAPIKey) > 0, TrustedNetworks: m.TrustedNetworks, FallbackModel: m.Fallback,
		CreateTime: ts(m.CreateTime), UpdateTime: ts(m.UpdateTime), ApiVersion: m.APIVersion,
	}
}

func settingToProto(fs store.FeatureSetting) *issuerv1.FeatureSetting {
	return &issuerv1.FeatureSetting{Feature: fs.Feature, Model: fs.Model, Disabled: fs.Disabled}
}

// publish rebuilds the watch snapshot from the store and wakes watchers.
func (s *Service) publish(ctx context.Context) error {
	cfg, err := s.cfg.Store.ModelConfig(ctx)
	if err != nil {
		return err
	}
	resp := &issuerv1.WatchModelsResponse{Revision: cfg.Revision}
	for _, m := range cfg.Models {
		pm := toProto(m)
		if len(m.SealedAPIKey) > 0 {
			key, err := s.cfg.KEK.Open(m.SealedAPIKey, aad(m.Name))
			if err != nil {
				return fmt.Errorf("model %q: api key: %w", m.Name, err)
			}
			pm.ApiKey = string(key)
		}
		resp.Models = append(resp.Models, pm)
	}
	for _, fs := range cfg.Settings {
		resp.Settings = append(resp.Settings, settingToProto(fs))
	}
	s.hub.Publish(cfg.Revision, resp)
	return nil
}

// Reload republishes the model configuration from the store: how a
// replica follows a change another replica made (issuer/follow). A
// revision not newer than the published one changes nothing.
func (s *Service) Reload(ctx context.Context) error { return s.publish(ctx) }

// Revision returns the published model configuration's revision.
func (s *Service) Revision() uint64 {
	rev, _ := s.hub.Current()
	return rev
}

// changed publishes after a successful write. A failure here leaves the
// write durable; watchers get it with the next change.
func (s *Service) changed(ctx context.Context) {
	if err := s.publish(ctx); err != nil {
		s.cfg.Logger.Error().Err(err).Msg("publishing model configuration failed")
	}
}

func fromProto(pm *issuerv1.Model) store.Model {
	return store.Model{
		Name: pm.GetName(), Family: pm.GetFamily(), Provider: pm.GetProvider(), Endpoint: pm.GetEndpoint(),
		Identifier: pm.GetIdentifier(), TrustedNetworks: pm.GetTrustedNetworks(), Fallback: pm.GetFallbackModel(),
		APIVersion: pm.GetApiVersion(),
	}
}

func (s *Service) seal(name, apiKey string) ([]byte, error) {
	if apiKey == "" {
		return nil, nil
	}
	return s.cfg.KEK.Seal([]byte(apiKey), aad(name))
}

// writeErr turns the store's refusals of a model write into errors the
// caller can act on: the fallback's dangling reference or cycle (which
// would make a gateway fail over forever) as field errors, a full registry
// with what to do. The store checks all three inside the write's
// transaction, so concurrent writes cannot get past them together.
func writeErr(err error, m store.Model) error {
	switch {
	case errors.Is(err, store.ErrReferenceNotFound):
		return &modelcheck.FieldError{Field: "fallback_model", Msg: fmt.Sprintf("unknown model %s", echo.Quote(m.Fallback))}
	case errors.Is(err, store.ErrCycle):
		// The stored chains are acyclic, so a new cycle runs through m.
		return &modelcheck.FieldError{Field: "fallback_model", Msg: fmt.Sprintf("fallback chain through %s forms a cycle", echo.Quote(m.Name))}
	case errors.Is(err, store.ErrLimitExceeded):
		return fmt.Errorf("%w: delete one first", err)
	}
	return err
}

// CreateModel registers a model. Administrators only.
func (s *Service) CreateModel(ctx context.Context, req *issuerv1.CreateModelRequest) (*issuerv1.CreateModelResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	m := modelcheck.Normalize(fromProto(req.GetModel()))
	if err := modelcheck.Validate(m, req.GetModel().GetApiKey()); err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	sealed, err := s.seal(m.Name, req.GetModel().GetApiKey())
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	m.SealedAPIKey = sealed
	m.CreateTime = s.cfg.Now()
	m.UpdateTime = m.CreateTime
	if err := s.cfg.Store.CreateModel(ctx, m, s.cfg.MaxModels); err != nil {
		return nil, apierr.Status(s.cfg.Logger, writeErr(err, m))
	}
	s.changed(ctx)
	return &issuerv1.CreateModelResponse{Model: toProto(m)}, nil
}

// UpdateModel changes the fields the request's update mask names (see
// planUpdate) and keeps the others, all inside the store's transaction: the
// merged model is validated against the stored one as it is at the write.
// Administrators only.
func (s *Service) UpdateModel(ctx context.Context, req *issuerv1.UpdateModelRequest) (*issuerv1.UpdateModelResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	pm := req.GetModel()
	apiKey := pm.GetApiKey()
	if apiKey != "" && req.GetClearApiKey() {
		return nil, status.Error(codes.InvalidArgument, "clear_api_key: cannot be combined with a new api_key")
	}
	if err := modelcheck.ValidName(pm.GetName()); err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	plan, err := planUpdate(req.GetUpdateMask(), pm, req.GetClearApiKey())
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	sealed, err := s.seal(pm.GetName(), apiKey)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	now, in := s.cfg.Now(), fromProto(pm)
	var merged store.Model
	stored, err := s.cfg.Store.UpdateModel(ctx, in.Name, func(old store.Model) (store.Model, error) {
		// Normalised after the merge: an endpoint's expected form depends on
		// the provider and identifier, which the mask may leave as stored.
		merged = modelcheck.Normalize(plan.apply(old, in, sealed))
		merged.UpdateTime = now
		return merged, modelcheck.Validate(merged, apiKey)
	})
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, writeErr(err, merged))
	}
	s.changed(ctx)
	return &issuerv1.UpdateModelResponse{Model: toProto(stored)}, nil
}

// DeleteModel removes an unused model. Administrators only.
func (s *Service) DeleteModel(ctx context.Context, req *issuerv1.DeleteModelRequest) (*issuerv1.DeleteModelResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.DeleteModel(ctx, req.GetName()); err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	s.changed(ctx)
	return &issuerv1.DeleteModelResponse{}, nil
}

// GetModel returns one model without its API key. Administrators and the gateway.
func (s *Service) GetModel(ctx context.Context, req *issuerv1.GetModelRequest) (*issuerv1.GetModelResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin, store.RoleGateway); err != nil {
		return nil, err
	}
	m, err := s.cfg.Store.GetModel(ctx, req.GetName())
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	return &issuerv1.GetModelResponse{Model: toProto(m)}, nil
}

// ListModels returns every model by name, without API keys.
func (s *Service) ListModels(ctx context.Context, _ *issuerv1.ListModelsRequest) (*issuerv1.ListModelsResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin, store.RoleGateway); err != nil {
		return nil, err
	}
	cfg, err := s.cfg.Store.ModelConfig(ctx)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	resp := &issuerv1.ListModelsResponse{}
	for _, m := range cfg.Models {
		resp.Models = append(resp.Models, toProto(m))
	}
	return resp, nil
}

// SetFeatureSetting binds a feature to a model or disables it.
func (s *Service) SetFeatureSetting(ctx context.Context, req *issuerv1.SetFeatureSettingRequest) (*issuerv1.SetFeatureSettingResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin); err != nil {
		return nil, err
	}
	set := req.GetSetting()
	if _, err := feature.Parse(set.GetFeature()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "setting.feature: %v", err)
	}
	switch {
	case set.GetModel() != "" && set.GetDisabled():
		return nil, status.Error(codes.InvalidArgument, "setting: set model or disabled, not both")
	case set.GetModel() == "" && !set.GetDisabled():
		return nil, status.Error(codes.InvalidArgument, "setting: set model, or disabled to turn the feature off")
	}
	fs := store.FeatureSetting{Feature: set.GetFeature(), Model: set.GetModel(), Disabled: set.GetDisabled()}
	if err := s.cfg.Store.SetFeatureSetting(ctx, fs); err != nil {
		if errors.Is(err, store.ErrReferenceNotFound) {
			return nil, status.Errorf(codes.FailedPrecondition, "setting.model: model %s does not exist", echo.Quote(fs.Model))
		}
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	s.changed(ctx)
	return &issuerv1.SetFeatureSettingResponse{Setting: settingToProto(fs)}, nil
}

// ListFeatureSettings returns every configured feature setting.
func (s *Service) ListFeatureSettings(ctx context.Context, _ *issuerv1.ListFeatureSettingsRequest) (*issuerv1.ListFeatureSettingsResponse, error) {
	if _, err := authn.Require(ctx, store.RoleAdmin, store.RoleGateway); err != nil {
		return nil, err
	}
	cfg, err := s.cfg.Store.ModelConfig(ctx)
	if err != nil {
		return nil, apierr.Status(s.cfg.Logger, err)
	}
	resp := &issuerv1.ListFeatureSettingsResponse{}
	for _, fs := range cfg.Settings {
		resp.Settings = append(resp.Settings, settingToProto(fs))
	}
	return resp, nil
}

// WatchModels streams the whole configuration with API keys. Gateway only.
func (s *Service) WatchModels(req *issuerv1.WatchModelsRequest, stream grpc.ServerStreamingServer[issuerv1.WatchModelsResponse]) error {
	ctx := stream.Context()
	if _, err := authn.Require(ctx, store.RoleGateway); err != nil {
		return err
	}
	sub := s.hub.Subscribe()
	defer sub.Close()
	last := req.GetKnownRevision()
	first := true
	for {
		if rev, snap := s.hub.Current(); snap != nil && (rev != last || (first && last == 0)) {
			if err := stream.Send(snap); err != nil {
				return err
			}
			last = rev
		}
		first = false
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-sub.C():
		}
	}
}

var _ issuerv1.ModelServiceServer = (*Service)(nil)
