package client_test

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
)

func TestIssuerTargetRejectsAnEntryWithoutPort(t *testing.T) {
	for _, addr := range []string{"a:1,b", "a:1,,b:2", "a:1, "} {
		if _, _, err := client.IssuerTarget(addr); err == nil || !strings.Contains(err.Error(), "issuer address") {
			t.Errorf("IssuerTarget(%q) = %v, want an issuer address error", addr, err)
		}
	}
	if target, _, err := client.IssuerTarget("dns:///issuer:9440"); err != nil || target != "dns:///issuer:9440" {
		t.Errorf("a dns target = %q, %v; want it unchanged", target, err)
	}
}

// TestIssuerListSurvivesAReplicaStopping mints through a list of two
// replicas, stops one, and keeps minting: every call succeeds (round robin
// moves on; a call that hit the dead one is retried on the other).
func TestIssuerListSurvivesAReplicaStopping(t *testing.T) {
	var servers []*clienttest.Server
	var fakes []*clienttest.Issuer
	for range 2 {
		iss := clienttest.NewIssuer(time.Now)
		iss.AddUser("glpat-list-test")
		srv, err := clienttest.NewServer(iss.Register, clienttest.WithTCP())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		servers, fakes = append(servers, srv), append(fakes, iss)
	}
	target, opts, err := client.IssuerTarget(servers[0].Addr() + "," + servers[1].Addr())
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tokens := issuerv1.NewTokenServiceClient(cc)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer glpat-list-test")
	mint := func(n int) {
		t.Helper()
		for i := range n {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := tokens.MintToken(cctx, &issuerv1.MintTokenRequest{})
			cancel()
			if err != nil {
				t.Fatalf("mint %d: %v", i, err)
			}
		}
	}
	mint(20)
	if fakes[0].Mints() == 0 || fakes[1].Mints() == 0 {
		t.Fatalf("round robin: replica mints %d and %d, want both used", fakes[0].Mints(), fakes[1].Mints())
	}
	servers[0].Close()
	before := fakes[1].Mints()
	mint(20)
	if got := fakes[1].Mints() - before; got != 20 {
		t.Fatalf("after replica 0 stopped, replica 1 minted %d of 20", got)
	}
}

// countingIssuer answers every MintToken and RotateKeys with Unavailable
// and counts the attempts.
type countingIssuer struct {
	issuerv1.UnimplementedTokenServiceServer
	issuerv1.UnimplementedKeyServiceServer
	mints, rotations atomic.Int32
}

func (c *countingIssuer) MintToken(context.Context, *issuerv1.MintTokenRequest) (*issuerv1.MintTokenResponse, error) {
	c.mints.Add(1)
	return nil, status.Error(codes.Unavailable, "database down")
}

func (c *countingIssuer) RotateKeys(context.Context, *issuerv1.RotateKeysRequest) (*issuerv1.RotateKeysResponse, error) {
	c.rotations.Add(1)
	return nil, status.Error(codes.Unavailable, "database down")
}

func TestIssuerRetryPolicyRetriesOnlyCallsSafeToRepeat(t *testing.T) {
	fake := &countingIssuer{}
	srv, err := clienttest.NewServer(func(r grpc.ServiceRegistrar) {
		issuerv1.RegisterTokenServiceServer(r, fake)
		issuerv1.RegisterKeyServiceServer(r, fake)
	}, clienttest.WithTCP())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, addr := range []string{srv.Addr(), srv.Addr() + "," + srv.Addr()} {
		t.Run(addr, func(t *testing.T) {
			fake.mints.Store(0)
			fake.rotations.Store(0)
			target, opts, err := client.IssuerTarget(addr)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx := context.Background()
			_, err = issuerv1.NewTokenServiceClient(cc).MintToken(ctx, &issuerv1.MintTokenRequest{})
			if status.Code(err) != codes.Unavailable || fake.mints.Load() != 4 {
				t.Fatalf("MintToken: %v after %d attempts, want Unavailable after 4", err, fake.mints.Load())
			}
			_, err = issuerv1.NewKeyServiceClient(cc).RotateKeys(ctx, &issuerv1.RotateKeysRequest{})
			if status.Code(err) != codes.Unavailable || fake.rotations.Load() != 1 {
				t.Fatalf("RotateKeys: %v after %d attempts, want Unavailable after 1 (not idempotent: never retried)", err, fake.rotations.Load())
			}
		})
	}
}

// TestPythonHelperUsesTheSameServiceConfig keeps the Python helper's copy of
// the service config equal to IssuerServiceConfig.
func TestPythonHelperUsesTheSameServiceConfig(t *testing.T) {
	src, err := os.ReadFile("../../python/airlock_client/__init__.py")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), `ISSUER_SERVICE_CONFIG = """`)
	py, _, ok2 := strings.Cut(rest, `"""`)
	if !ok || !ok2 {
		t.Fatal("python/airlock_client has no ISSUER_SERVICE_CONFIG")
	}
	var a, b any
	if err := json.Unmarshal([]byte(py), &a); err != nil {
		t.Fatalf("Python's service config: %v", err)
	}
	if err := json.Unmarshal([]byte(client.IssuerServiceConfig), &b); err != nil {
		t.Fatalf("IssuerServiceConfig: %v", err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("python/airlock_client's ISSUER_SERVICE_CONFIG differs from client.IssuerServiceConfig")
	}
}
