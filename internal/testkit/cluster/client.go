package cluster

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/token"
)

// CredentialFile is where the issuer wrote user's personal access token on
// its first start (users admin, demo and gateway).
func (c *Cluster) CredentialFile(user string) string {
	return filepath.Join(c.DataDir, "credentials", user+".token")
}

// PAT returns the personal access token the issuer bootstrapped for user.
// Callers must not log it.
func (c *Cluster) PAT(user string) (string, error) {
	b, err := os.ReadFile(c.CredentialFile(user))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// AsUser returns ctx carrying user's personal access token for the issuer.
func (c *Cluster) AsUser(ctx context.Context, user string) (context.Context, error) {
	pat, err := c.PAT(user)
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, token.MDAuthorization, "Bearer "+pat), nil
}

// Mint mints one token for user over the user's personal access token
// (pkg/client's PATCredentials and TokenFromResponse): for the given
// features (nil: every feature the user may use) and lifetime (zero: the
// issuer's default). The token is returned even if it has expired by the
// time it arrives (a one-second token may have). Errors are *client.Error
// values, or the error reading the user's token file.
func (c *Cluster) Mint(ctx context.Context, user string, features []string, ttl time.Duration) (*client.Token, error) {
	pat, err := c.PAT(user)
	if err != nil {
		return nil, err
	}
	req := &issuerv1.MintTokenRequest{Features: features}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := issuerv1.NewTokenServiceClient(c.IssuerConn()).MintToken(ctx, req,
		grpc.PerRPCCredentials(client.PATCredentials(pat, client.AllowInsecure())))
	if err != nil {
		return nil, client.FromError(err)
	}
	return client.TokenFromResponse(resp)
}

// Metadata returns everything a client sends to the gateway with tok: its
// x-gitlab-* metadata and "authorization: Bearer <jwt>". The map is new;
// tests may change it to forge a bad request.
func Metadata(tok *client.Token) map[string]string {
	md := maps.Clone(tok.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	md[token.MDAuthorization] = "Bearer " + tok.AccessToken
	return md
}

// Outgoing returns ctx carrying md as outgoing gRPC metadata.
func Outgoing(ctx context.Context, md map[string]string) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.New(md))
}

// Chat streams the answer to a one-turn chat ("Say hello") for feature
// through the gateway, with the metadata on ctx (Outgoing), and collects
// it. See Collect.
func (c *Cluster) Chat(ctx context.Context, feature string) (string, *client.Done, error) {
	return Collect(client.New(c.GatewayConn()).Stream(ctx, feature, client.User("Say hello")))
}

// Collect reads s to its end and returns the text, how the answer ended
// (nil on error) and the error (a *client.Error, whose GRPCStatus keeps
// the gateway's code, message and details). Text received before an error
// is returned with it.
func Collect(s *client.Stream) (string, *client.Done, error) {
	defer s.Close()
	var b strings.Builder
	for s.Next() {
		b.WriteString(s.Text())
	}
	done, err := s.Done()
	if err != nil {
		return b.String(), nil, err
	}
	return b.String(), &done, nil
}

// CreateModel creates m at the issuer as the administrator.
func (c *Cluster) CreateModel(ctx context.Context, m *issuerv1.Model) error {
	actx, err := c.AsUser(ctx, "admin")
	if err != nil {
		return err
	}
	if _, err := issuerv1.NewModelServiceClient(c.IssuerConn()).CreateModel(actx, &issuerv1.CreateModelRequest{Model: m}); err != nil {
		return fmt.Errorf("CreateModel(%s): %w", m.GetName(), err)
	}
	return nil
}

// Bind routes feature to model, as the administrator.
func (c *Cluster) Bind(ctx context.Context, feature, model string) error {
	actx, err := c.AsUser(ctx, "admin")
	if err != nil {
		return err
	}
	_, err = issuerv1.NewModelServiceClient(c.IssuerConn()).SetFeatureSetting(actx,
		&issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: feature, Model: model}})
	if err != nil {
		return fmt.Errorf("SetFeatureSetting(%s → %s): %w", feature, model, err)
	}
	return nil
}

// LoopbackModel is an OpenAI-compatible model at endpoint that the gateway
// may reach on loopback only.
func LoopbackModel(name, endpoint, identifier string) *issuerv1.Model {
	return &issuerv1.Model{Name: name, Family: "general", Provider: "openai_compatible", Endpoint: endpoint,
		Identifier: identifier, TrustedNetworks: []string{"127.0.0.1/32"}}
}

// configureStub registers the stub as StubModel and binds every feature to
// it, as an administrator would. A stub model kept from an earlier start
// is reused.
func (c *Cluster) configureStub(ctx context.Context) error {
	err := c.CreateModel(ctx, LoopbackModel(StubModel, "http://"+c.StubAddr+"/v1", "airlock-stub"))
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return err
	}
	for _, f := range Features {
		if err := c.Bind(ctx, f, StubModel); err != nil {
			return err
		}
	}
	return nil
}
