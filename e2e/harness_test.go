// Package e2e drives the real binaries (issuer, gateway, stubmodel) through
// the whole flow over loopback: an administrator configures a model, a user
// mints a token, the gateway verifies it with keys fetched over gRPC and
// streams a completion back.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/pkg/healthprobe"
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
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "../cmd/issuer", "../cmd/gateway", "../cmd/stubmodel")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building binaries:", err)
		os.Exit(1)
	}
	code := pgtest.Main(m) // m.Run, then stop the PostgreSQL server if a test started one
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

// proc is a running binary whose output is kept for failure reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHealthy(t *testing.T, p *proc, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if healthprobe.Check(context.Background(), addr, "", nil, time.Second) == nil {
			return
		}
		if p.cmd.ProcessState != nil {
			t.Fatalf("%s exited: %s", p.name, p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s at %s not healthy after 60s", p.name, addr)
}

// cluster is one issuer, one gateway and one stub model on loopback.
type cluster struct {
	t                      *testing.T
	dataDir                string
	issuerGRPC, issuerHTTP string
	gatewayGRPC, stubAddr  string
	issuer, gateway, stub  *proc
	gatewayArgs            []string
	issuerArgs             []string // added to the issuer's (e.g. --postgres-url)
}

func newCluster(t *testing.T, gatewayArgs ...string) *cluster {
	t.Helper()
	return newClusterWithIssuerArgs(t, nil, gatewayArgs...)
}

func newClusterWithIssuerArgs(t *testing.T, issuerArgs []string, gatewayArgs ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dataDir: t.TempDir(), issuerGRPC: freeAddr(t), issuerHTTP: freeAddr(t), gatewayGRPC: freeAddr(t), stubAddr: freeAddr(t),
		gatewayArgs: gatewayArgs, issuerArgs: issuerArgs}
	c.stub = startProc(t, "stubmodel", "--addr", c.stubAddr, "--tokens", "12", "--delay", "1ms")
	c.startIssuer()
	c.startGateway()
	c.configureStub()
	return c
}

func (c *cluster) issuerURL() string { return "http://" + c.issuerHTTP }

func (c *cluster) startIssuer() {
	c.issuer = startProc(c.t, "issuer", append([]string{"--dev", "--data-dir", filepath.Join(c.dataDir, "issuer"),
		"--grpc-addr", c.issuerGRPC, "--http-addr", c.issuerHTTP, "--issuer-url", c.issuerURL()}, c.issuerArgs...)...)
	waitHealthy(c.t, c.issuer, c.issuerGRPC)
}

func (c *cluster) startGateway() {
	args := append([]string{"--plaintext", "--grpc-addr", c.gatewayGRPC, "--http-addr", "",
		"--issuer-addr", c.issuerGRPC, "--issuer-token-file", c.credential("gateway"),
		"--expected-issuer", c.issuerURL()}, c.gatewayArgs...)
	c.gateway = startProc(c.t, "gateway", args...)
	waitHealthy(c.t, c.gateway, c.gatewayGRPC)
}

func (c *cluster) credential(user string) string {
	return filepath.Join(c.dataDir, "issuer", "credentials", user+".token")
}

func (c *cluster) pat(user string) string {
	b, err := os.ReadFile(c.credential(user))
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// asUser returns ctx carrying a personal access token for the issuer.
func (c *cluster) asUser(ctx context.Context, user string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.pat(user))
}
