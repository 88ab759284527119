package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/devpki"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// TestMutualTLSEverywhere runs the flow with mutual TLS between the tool,
// the gateway and the issuer. The gateway has no personal access token: its
// client certificate (spiffe://airlock/gateway) is its identity at the
// issuer, so it can watch models and revocations.
func TestMutualTLSEverywhere(t *testing.T) {
	pki := t.TempDir()
	if err := devpki.CreateCAFiles(pki, "airlock e2e CA", time.Hour); err != nil {
		t.Fatal(err)
	}
	loop := []net.IP{net.ParseIP("127.0.0.1")}
	for _, name := range []string{"issuer", "gateway", "tool"} {
		if err := devpki.IssueFiles(pki, pki, name, []string{"localhost"}, loop, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	crt := func(n string) string { return filepath.Join(pki, devpki.CertFile(n)) }
	key := func(n string) string { return filepath.Join(pki, devpki.KeyFile(n)) }
	ca := filepath.Join(pki, devpki.CACertFile)

	c := &cluster{t: t, dataDir: t.TempDir(), issuerGRPC: freeAddr(t), issuerHTTP: freeAddr(t), gatewayGRPC: freeAddr(t), stubAddr: freeAddr(t)}
	c.stub = startProc(t, "stubmodel", "--addr", c.stubAddr, "--tokens", "12", "--delay", "1ms")
	c.issuer = startProc(t, "issuer", "--bootstrap", "--kek-file", writeKEK(t), "--data-dir", filepath.Join(c.dataDir, "issuer"),
		"--grpc-addr", c.issuerGRPC, "--http-addr", c.issuerHTTP, "--issuer-url", "https://"+c.issuerHTTP,
		"--tls-cert", crt("issuer"), "--tls-key", key("issuer"), "--tls-client-ca", ca)
	toolTLS, err := tlsconfig.Client(ca, crt("tool"), key("tool"), "")
	if err != nil {
		t.Fatal(err)
	}
	waitTLSHealthy(t, c.issuer, c.issuerGRPC, toolTLS)
	healthAddr := freeAddr(t)
	c.gateway = startProc(t, "gateway", "--grpc-addr", c.gatewayGRPC, "--http-addr", "", "--api-http-addr", "", "--health-addr", healthAddr,
		"--tls-cert", crt("gateway"), "--tls-key", key("gateway"), "--tls-client-ca", ca,
		"--issuer-addr", c.issuerGRPC, "--issuer-ca", ca, "--issuer-cert", crt("gateway"), "--issuer-key", key("gateway"),
		"--expected-issuer", "https://"+c.issuerHTTP)

	// The tool: mTLS to both, PAT at the issuer, minted token at the gateway.
	creds := grpc.WithTransportCredentials(credentials.NewTLS(toolTLS))
	admin, err := grpc.NewClient(c.issuerGRPC, creds, grpc.WithPerRPCCredentials(client.PATCredentials(c.pat("admin"))))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	models := issuerv1.NewModelServiceClient(admin)
	ctx := context.Background()
	if _, err := models.CreateModel(ctx, &issuerv1.CreateModelRequest{Model: &issuerv1.Model{Name: "stub", Family: "general",
		Provider: "openai_compatible", Endpoint: "http://" + c.stubAddr + "/v1", Identifier: "airlock-stub", TrustedNetworks: []string{"127.0.0.1/32"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := models.SetFeatureSetting(ctx, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "duo_chat", Model: "stub"}}); err != nil {
		t.Fatal(err)
	}
	waitTLSHealthy(t, c.gateway, c.gatewayGRPC, toolTLS) // SERVING needs keys and models, read with the certificate identity

	demo, err := grpc.NewClient(c.issuerGRPC, creds, grpc.WithPerRPCCredentials(client.PATCredentials(c.pat("demo"))))
	if err != nil {
		t.Fatal(err)
	}
	defer demo.Close()
	tokens := client.NewTokenSource(issuerv1.NewTokenServiceClient(demo), client.WithFeatures("duo_chat"))
	defer tokens.Close()
	gw, err := grpc.NewClient(c.gatewayGRPC, creds, grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(tokens)))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	got, err := client.New(gw).Complete(ctx, "duo_chat", client.User("hi"))
	if err != nil || got.Text != stubAnswer {
		t.Fatalf("Complete over mTLS = %+v, %v", got, err)
	}

	// Probes that cannot present a certificate (the kubelet's gRPC probe)
	// use the health-only plaintext port.
	if err := healthprobe.Check(ctx, healthAddr, "", nil, 2*time.Second); err != nil {
		t.Fatalf("plaintext health port: %v", err)
	}

	// A caller without a client certificate is refused at the handshake,
	// and a tool's certificate is not the gateway's identity.
	noCert, _ := tlsconfig.Client(ca, "", "", "")
	if err := healthprobe.Check(ctx, c.gatewayGRPC, "", noCert, 2*time.Second); err == nil {
		t.Fatal("gateway accepted a client without a certificate")
	}
	tool, _ := grpc.NewClient(c.issuerGRPC, creds)
	defer tool.Close()
	st, err := issuerv1.NewModelServiceClient(tool).WatchModels(ctx, &issuerv1.WatchModelsRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("WatchModels with a tool certificate = %v, want Unauthenticated", err)
	}
}

func writeKEK(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kek")
	// 32 bytes, base64: a fixed test key (never a production value).
	if err := os.WriteFile(p, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitTLSHealthy(t *testing.T, p *proc, addr string, tc *tls.Config) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if healthprobe.Check(context.Background(), addr, "", tc, time.Second) == nil {
			return
		}
		if p.cmd.ProcessState != nil {
			t.Fatalf("%s exited: %s", p.name, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s at %s not healthy over TLS after 30s", p.name, addr)
}
