// Package e2e drives the real binaries (issuer, gateway, stubmodel) through
// the whole flow over loopback: an administrator configures a model, a user
// mints a token, the gateway verifies it with keys fetched over gRPC and
// streams a completion back. The processes come from
// internal/testkit/cluster; this file only adapts it to *testing.T.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/pkg/client"
)

var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "airlock-e2e-bin")
	if err != nil {
		panic(err)
	}
	binDir = dir
	if err := cluster.Build(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// Every process was stopped and every connection closed: no goroutine
	// of the tests themselves may remain.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testCluster is one test's cluster; its methods fail the test instead of
// returning errors.
type testCluster struct {
	*cluster.Cluster
	t *testing.T
}

// newCluster starts the default cluster (stub bound to every feature) with
// extra gateway flags.
func newCluster(t *testing.T, gatewayArgs ...string) *testCluster {
	t.Helper()
	return startCluster(t, cluster.Config{GatewayArgs: gatewayArgs})
}

// startCluster starts cfg's cluster from the binaries TestMain built, with
// a stub answering 12 tokens 1 ms apart, and stops it when the test ends,
// printing the tail of each process's output if the test failed.
func startCluster(t *testing.T, cfg cluster.Config) *testCluster {
	t.Helper()
	cfg.BinDir, cfg.WorkDir = binDir, t.TempDir()
	cfg.StubTokens, cfg.StubDelay = 12, time.Millisecond
	c, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, p := range []*cluster.Proc{c.Issuer, c.Gateway, c.Stub} {
				if p != nil {
					t.Logf("---- %s output (last 64 KiB) ----\n%s", p.Name, p.Output())
				}
			}
		}
	})
	return &testCluster{Cluster: c, t: t}
}

func (c *testCluster) restartIssuer() {
	c.t.Helper()
	if err := c.RestartIssuer(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) restartGateway(extraArgs ...string) {
	c.t.Helper()
	if err := c.RestartGateway(context.Background(), extraArgs...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) pat(user string) string {
	c.t.Helper()
	pat, err := c.PAT(user)
	if err != nil {
		c.t.Fatal(err)
	}
	return pat
}

// asUser returns ctx carrying a personal access token for the issuer.
func (c *testCluster) asUser(ctx context.Context, user string) context.Context {
	c.t.Helper()
	ctx, err := c.AsUser(ctx, user)
	if err != nil {
		c.t.Fatal(err)
	}
	return ctx
}

// mint mints a token for the demo user.
func (c *testCluster) mint(features []string, ttl time.Duration) *client.Token {
	c.t.Helper()
	tok, err := c.Mint(context.Background(), "demo", features, ttl)
	if err != nil {
		c.t.Fatalf("MintToken: %v", err)
	}
	return tok
}

// stream streams a chat answer for feature with the metadata on ctx and
// returns the text and final status (pkg/client's Stream).
func (c *testCluster) stream(ctx context.Context, feature string) (string, error) {
	text, _, err := c.Chat(ctx, feature)
	return text, err
}

// createModel registers an OpenAI-compatible model at endpoint.
func (c *testCluster) createModel(name, endpoint, apiKey string) {
	c.t.Helper()
	m := cluster.LoopbackModel(name, endpoint, "fault-"+name)
	m.ApiKey = apiKey
	if err := c.CreateModel(context.Background(), m); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) bind(feature, model string) {
	c.t.Helper()
	if err := c.Bind(context.Background(), feature, model); err != nil {
		c.t.Fatal(err)
	}
}

// withToken returns a context carrying what a client sends with tok.
func withToken(tok *client.Token) context.Context {
	return withMetadata(cluster.Metadata(tok))
}

func withMetadata(md map[string]string) context.Context {
	return metadata.NewOutgoingContext(context.Background(), metadata.New(md))
}

// dial opens a plaintext connection of the test's own, closed when it ends.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := cluster.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}
