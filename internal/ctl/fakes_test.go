package ctl

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
)

// Secrets the tests hand to airlockctl; none may ever appear in its output.
const (
	adminPAT    = "glpat-admin-secret"
	modelAPIKey = "sk-model-api-key-secret"
	newPATValue = "glpat-new-secret"
)

// recorder keeps the last request each fake admin RPC received.
type recorder struct {
	mu   sync.Mutex
	last map[string]proto.Message
}

func (r *recorder) record(ctx context.Context, method string, req proto.Message) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 0 || v[0] != "Bearer "+adminPAT {
		return status.Error(codes.Unauthenticated, "invalid personal access token")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]proto.Message{}
	}
	r.last[method] = req
	return nil
}

// reset forgets every recorded request.
func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.last)
}

func (r *recorder) get(method string) proto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[method]
}

var stamp = timestamppb.New(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC))

type fakeModels struct {
	issuerv1.UnimplementedModelServiceServer
	*recorder
}

func stored(m *issuerv1.Model) *issuerv1.Model {
	out := proto.Clone(m).(*issuerv1.Model)
	out.HasApiKey = m.GetApiKey() != ""
	out.ApiKey = modelAPIKey // a misbehaving server echoing the key: airlockctl must not print it
	out.UpdateTime = stamp
	return out
}

func (f fakeModels) CreateModel(ctx context.Context, req *issuerv1.CreateModelRequest) (*issuerv1.CreateModelResponse, error) {
	if err := f.record(ctx, "CreateModel", req); err != nil {
		return nil, err
	}
	if req.GetModel().GetName() == "taken" {
		return nil, status.Error(codes.AlreadyExists, `model "taken" already exists`)
	}
	return &issuerv1.CreateModelResponse{Model: stored(req.GetModel())}, nil
}

func (f fakeModels) UpdateModel(ctx context.Context, req *issuerv1.UpdateModelRequest) (*issuerv1.UpdateModelResponse, error) {
	if err := f.record(ctx, "UpdateModel", req); err != nil {
		return nil, err
	}
	return &issuerv1.UpdateModelResponse{Model: stored(req.GetModel())}, nil
}

func (f fakeModels) DeleteModel(ctx context.Context, req *issuerv1.DeleteModelRequest) (*issuerv1.DeleteModelResponse, error) {
	if err := f.record(ctx, "DeleteModel", req); err != nil {
		return nil, err
	}
	if req.GetName() == "in-use" {
		return nil, status.Error(codes.FailedPrecondition, `model "in-use" serves duo_chat`)
	}
	return &issuerv1.DeleteModelResponse{}, nil
}

func (f fakeModels) GetModel(ctx context.Context, req *issuerv1.GetModelRequest) (*issuerv1.GetModelResponse, error) {
	if err := f.record(ctx, "GetModel", req); err != nil {
		return nil, err
	}
	if req.GetName() != "stub" {
		return nil, status.Errorf(codes.NotFound, "model %q not found", req.GetName())
	}
	return &issuerv1.GetModelResponse{Model: stored(&issuerv1.Model{Name: "stub", Family: "general", Provider: "openai_compatible",
		Endpoint: "http://127.0.0.1:9460/v1", Identifier: "stub", ApiKey: "x", TrustedNetworks: []string{"127.0.0.0/8"}})}, nil
}

func (f fakeModels) ListModels(ctx context.Context, req *issuerv1.ListModelsRequest) (*issuerv1.ListModelsResponse, error) {
	if err := f.record(ctx, "ListModels", req); err != nil {
		return nil, err
	}
	return &issuerv1.ListModelsResponse{Models: []*issuerv1.Model{
		stored(&issuerv1.Model{Name: "a", Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.0.0.1/v1", Identifier: "m", ApiKey: "k"}),
		stored(&issuerv1.Model{Name: "b", Family: "llama3", Provider: "ollama", Endpoint: "http://10.0.0.2", Identifier: "l", FallbackModel: "a"}),
	}}, nil
}

func (f fakeModels) SetFeatureSetting(ctx context.Context, req *issuerv1.SetFeatureSettingRequest) (*issuerv1.SetFeatureSettingResponse, error) {
	if err := f.record(ctx, "SetFeatureSetting", req); err != nil {
		return nil, err
	}
	return &issuerv1.SetFeatureSettingResponse{Setting: req.GetSetting()}, nil
}

func (f fakeModels) ListFeatureSettings(ctx context.Context, req *issuerv1.ListFeatureSettingsRequest) (*issuerv1.ListFeatureSettingsResponse, error) {
	if err := f.record(ctx, "ListFeatureSettings", req); err != nil {
		return nil, err
	}
	return &issuerv1.ListFeatureSettingsResponse{Settings: []*issuerv1.FeatureSetting{
		{Feature: "code_completions", Model: "a"}, {Feature: "duo_chat", Disabled: true},
	}}, nil
}

type fakeKeys struct {
	issuerv1.UnimplementedKeyServiceServer
	*recorder
}

var keySet = &issuerv1.KeySet{
	Revision: 7,
	Jwks:     []byte(`{"keys":[{"kty":"RSA","kid":"k1","e":"AQAB","n":"xyz","use":"sig","alg":"RS256"}]}`),
	Keys:     []*issuerv1.KeyInfo{{Kid: "k1", Alg: "RS256", State: issuerv1.KeyState_KEY_STATE_ACTIVE, ActivateTime: stamp}},
}

func (f fakeKeys) GetKeys(ctx context.Context, req *issuerv1.GetKeysRequest) (*issuerv1.GetKeysResponse, error) {
	if err := f.record(ctx, "GetKeys", req); err != nil {
		return nil, err
	}
	return &issuerv1.GetKeysResponse{KeySet: keySet}, nil
}

func (f fakeKeys) RotateKeys(ctx context.Context, req *issuerv1.RotateKeysRequest) (*issuerv1.RotateKeysResponse, error) {
	if err := f.record(ctx, "RotateKeys", req); err != nil {
		return nil, err
	}
	return &issuerv1.RotateKeysResponse{KeySet: keySet}, nil
}

type fakeUsers struct {
	issuerv1.UnimplementedUserServiceServer
	*recorder
}

func (f fakeUsers) CreateUser(ctx context.Context, req *issuerv1.CreateUserRequest) (*issuerv1.CreateUserResponse, error) {
	if err := f.record(ctx, "CreateUser", req); err != nil {
		return nil, err
	}
	u := proto.Clone(req.GetUser()).(*issuerv1.User)
	u.Id = 42
	return &issuerv1.CreateUserResponse{User: u}, nil
}

func (f fakeUsers) ListUsers(ctx context.Context, req *issuerv1.ListUsersRequest) (*issuerv1.ListUsersResponse, error) {
	if err := f.record(ctx, "ListUsers", req); err != nil {
		return nil, err
	}
	return &issuerv1.ListUsersResponse{Users: []*issuerv1.User{{Username: "admin", Id: 1, Role: issuerv1.Role_ROLE_ADMIN}}}, nil
}

func (f fakeUsers) CreatePersonalAccessToken(ctx context.Context, req *issuerv1.CreatePersonalAccessTokenRequest) (*issuerv1.CreatePersonalAccessTokenResponse, error) {
	if err := f.record(ctx, "CreatePersonalAccessToken", req); err != nil {
		return nil, err
	}
	return &issuerv1.CreatePersonalAccessTokenResponse{
		Token:  &issuerv1.PersonalAccessToken{Id: "pat-9", Username: req.GetUsername(), ExpireTime: req.GetExpireTime()},
		Secret: newPATValue,
	}, nil
}

func (f fakeUsers) RevokePersonalAccessToken(ctx context.Context, req *issuerv1.RevokePersonalAccessTokenRequest) (*issuerv1.RevokePersonalAccessTokenResponse, error) {
	if err := f.record(ctx, "RevokePersonalAccessToken", req); err != nil {
		return nil, err
	}
	return &issuerv1.RevokePersonalAccessTokenResponse{Token: &issuerv1.PersonalAccessToken{Id: req.GetId()}}, nil
}

// cluster is a fake issuer (all four services) and gateway on one loopback
// port.
type cluster struct {
	srv    *clienttest.Server
	rec    *recorder
	issuer *clienttest.Issuer
	gw     *clienttest.Gateway
	health *health.Server
}

func newCluster(t *testing.T, opts ...clienttest.Option) *cluster {
	t.Helper()
	c := &cluster{rec: &recorder{}, issuer: clienttest.NewIssuer(nil), health: health.NewServer()}
	c.issuer.AddUser(adminPAT)
	c.gw = clienttest.NewGateway(c.issuer)
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) {
		c.issuer.Register(s)
		c.gw.Register(s)
		issuerv1.RegisterModelServiceServer(s, fakeModels{recorder: c.rec})
		issuerv1.RegisterKeyServiceServer(s, fakeKeys{recorder: c.rec})
		issuerv1.RegisterUserServiceServer(s, fakeUsers{recorder: c.rec})
		healthpb.RegisterHealthServer(s, c.health)
	}, append([]clienttest.Option{clienttest.WithTCP()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c.srv = srv
	return c
}

// result is one airlockctl run.
type result struct {
	code           int
	stdout, stderr string
}

// run runs airlockctl against the cluster with the admin PAT in the
// environment, plaintext, plus env and args.
func (c *cluster) run(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	full := map[string]string{
		"AIRLOCK_ISSUER_ADDR":  c.srv.Addr(),
		"AIRLOCK_GATEWAY_ADDR": c.srv.Addr(),
		"AIRLOCK_TOKEN":        adminPAT,
		"AIRLOCK_PLAINTEXT":    "true",
		"AIRLOCK_TIMEOUT":      "10s",
	}
	for k, v := range env {
		if v == "" {
			delete(full, k)
		} else {
			full[k] = v
		}
	}
	return runCtl(t, stdin, full, args...)
}

func runCtl(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut strings.Builder
	code := Run(context.Background(), args, IO{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errOut,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	r := result{code: code, stdout: out.String(), stderr: errOut.String()}
	for _, secret := range []string{adminPAT, modelAPIKey} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("airlockctl %v printed a secret:\nstdout: %s\nstderr: %s", args, r.stdout, r.stderr)
		}
	}
	return r
}
