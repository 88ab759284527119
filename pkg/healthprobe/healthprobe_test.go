package healthprobe

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/pkg/devpki"
)

// Probing a plaintext server with TLS fails with a hint naming the flags to
// drop; probing it as it is succeeds.
func TestMainHintsAtATLSMismatch(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	var out bytes.Buffer
	if code := Main("test", lis.Addr().String(), nil, &out); code != 0 {
		t.Fatalf("plaintext probe: exit %d: %s", code, out.String())
	}
	ca := t.TempDir() + "/ca.crt"
	out.Reset()
	if code := Main("test", lis.Addr().String(), []string{"--ca", ca}, &out); code != 2 {
		t.Fatalf("missing CA file: exit %d: %s", code, out.String())
	}
	caPEM, _, err := devpki.NewCA("probe test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	code := Main("test", lis.Addr().String(), []string{"--ca", ca}, &out)
	if code != 1 || !strings.Contains(out.String(), "hint: the server speaks plaintext: probe it without --ca") {
		t.Fatalf("TLS probe of a plaintext server: exit %d: %s", code, out.String())
	}
}
