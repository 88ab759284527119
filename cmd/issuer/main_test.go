package main_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// TestBinaryRestartPersistence builds the real binary, mints a token,
// stops the process with SIGTERM, starts it again on the same data
// directory and checks the old token still verifies against the JWKS.
func TestBinaryRestartPersistence(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "issuer")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	args := []string{"--dev", "--data-dir", dir, "--grpc-addr", grpcAddr, "--http-addr", httpAddr,
		"--issuer-url", "http://" + httpAddr, "--shutdown-grace", "2s"}

	var logs bytes.Buffer
	p := run(t, bin, args, &logs)
	waitHealthy(t, bin, grpcAddr)
	demo, err := os.ReadFile(filepath.Join(dir, "credentials", "demo.token"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+strings.TrimSpace(string(demo)))
	minted, err := issuerv1.NewTokenServiceClient(cc).MintToken(ctx, &issuerv1.MintTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stop(t, p)

	p = run(t, bin, args, &logs)
	waitHealthy(t, bin, grpcAddr)
	resp, err := http.Get("http://" + httpAddr + "/oauth/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(minted.GetToken()), jwt.WithKeySet(set), jwt.WithIssuer("http://"+httpAddr)); err != nil {
		t.Fatalf("token minted before the restart no longer verifies: %v", err)
	}
	stop(t, p)
	if strings.Contains(logs.String(), strings.TrimSpace(string(demo))) || strings.Contains(logs.String(), minted.GetToken()) {
		t.Fatal("a secret appears in the binary's log")
	}
	if !strings.Contains(logs.String(), `"level":"info"`) {
		t.Fatal("no JSON log captured")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(t *testing.T, bin string, args []string, logs io.Writer) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Stderr, cmd.Stdout = logs, logs
	cmd.Env = append(os.Environ(), "AIRLOCK_ISSUER_KEK=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

func waitHealthy(t *testing.T, bin, addr string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := exec.Command(bin, "healthcheck", "--addr", addr, "--timeout", "1s").Run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("issuer at %s never became healthy: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stop(t *testing.T, cmd *exec.Cmd) {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("issuer exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("issuer did not stop within 15 s of SIGTERM")
	}
}
