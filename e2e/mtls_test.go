package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// TestMutualTLSEverywhere runs the flow with mutual TLS between the tool,
// the gateway and the issuer. The gateway has no personal access token: its
// client certificate (spiffe://airlock/gateway) is its identity at the
// issuer, so it can watch models and revocations.
func TestMutualTLSEverywhere(t *testing.T) {
	// The cluster's private CA issued the issuer, gateway and tool
	// certificates; the test configures the models itself, as the tool.
	c := startCluster(t, cluster.Config{MutualTLS: true, SkipModelSetup: true})
	toolTLS, ca := c.ClientTLS(), c.CAFile()

	// The tool: mTLS to both, PAT at the issuer, minted token at the gateway.
	creds := grpc.WithTransportCredentials(credentials.NewTLS(toolTLS))
	admin, err := grpc.NewClient(c.IssuerGRPC, creds, grpc.WithPerRPCCredentials(client.PATCredentials(c.pat("admin"))))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	models := issuerv1.NewModelServiceClient(admin)
	ctx := context.Background()
	if _, err := models.CreateModel(ctx, &issuerv1.CreateModelRequest{Model: &issuerv1.Model{Name: "stub", Family: "general",
		Provider: "openai_compatible", Endpoint: "http://" + c.StubAddr + "/v1", Identifier: "airlock-stub", TrustedNetworks: []string{"127.0.0.1/32"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := models.SetFeatureSetting(ctx, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "duo_chat", Model: "stub"}}); err != nil {
		t.Fatal(err)
	}

	demo, err := grpc.NewClient(c.IssuerGRPC, creds, grpc.WithPerRPCCredentials(client.PATCredentials(c.pat("demo"))))
	if err != nil {
		t.Fatal(err)
	}
	defer demo.Close()
	tokens := client.NewTokenSource(issuerv1.NewTokenServiceClient(demo), client.WithFeatures("duo_chat"))
	defer tokens.Close()
	gw, err := grpc.NewClient(c.GatewayGRPC, creds, grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(tokens)))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	// The gateway (serving since it read keys and models with its
	// certificate identity) learns the binding by push.
	eventually(t, func() error {
		got, err := client.New(gw).Complete(ctx, "duo_chat", client.User("hi"))
		if err != nil || got.Text != stubAnswer {
			return fmt.Errorf("Complete over mTLS = %+v, %v", got, err)
		}
		return nil
	})

	// Probes that cannot present a certificate (the kubelet's gRPC probe)
	// use the health-only plaintext port.
	if err := healthprobe.Check(ctx, c.GatewayHealth, "", nil, 2*time.Second); err != nil {
		t.Fatalf("plaintext health port: %v", err)
	}

	// A caller without a client certificate is refused at the handshake,
	// and a tool's certificate is not the gateway's identity.
	noCert, _ := tlsconfig.Client(ca, "", "", "")
	if err := healthprobe.Check(ctx, c.GatewayGRPC, "", noCert, 2*time.Second); err == nil {
		t.Fatal("gateway accepted a client without a certificate")
	}
	tool, _ := grpc.NewClient(c.IssuerGRPC, creds)
	defer tool.Close()
	st, err := issuerv1.NewModelServiceClient(tool).WatchModels(ctx, &issuerv1.WatchModelsRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("WatchModels with a tool certificate = %v, want Unauthenticated", err)
	}
}
