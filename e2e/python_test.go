package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
)

// TestPythonClientInterop runs python/interop_test.py with Debian's
// python3-grpcio against the real binaries: Python mints a token through the
// issuer and streams a completion through the gateway.
func TestPythonClientInterop(t *testing.T) {
	const python = "/usr/bin/python3" // Debian's packages install for the system interpreter
	if exec.Command(python, "-c", "import grpc, google.protobuf").Run() != nil {
		needs.Skip(t, "no /usr/bin/python3 with grpc and protobuf; run python/install-deps.sh")
	}
	c := newCluster(t)
	cmd := exec.Command(python, "-m", "unittest", "-v", "interop_test")
	cmd.Dir = "../python"
	cmd.Env = append(os.Environ(),
		"AIRLOCK_ISSUER_ADDR="+c.IssuerGRPC,
		"AIRLOCK_GATEWAY_ADDR="+c.GatewayGRPC,
		"AIRLOCK_TOKEN_FILE="+c.CredentialFile("demo"),
		"AIRLOCK_PLAINTEXT=true",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python interop test failed: %v\n%s", err, out)
	}
	// unittest reports a skip as success: require the test really ran.
	if !strings.Contains(string(out), "test_mint_and_stream_completion") || strings.Contains(string(out), "skipped") {
		t.Fatalf("python interop test did not run:\n%s", out)
	}
	t.Logf("%s", out)
}

// TestPythonClientUnit runs the Python helper's own unit tests (token
// caching, refresh and failure rules with a fake clock).
func TestPythonClientUnit(t *testing.T) {
	const python = "/usr/bin/python3"
	if exec.Command(python, "-c", "import grpc, google.protobuf").Run() != nil {
		needs.Skip(t, "no /usr/bin/python3 with grpc and protobuf; run python/install-deps.sh")
	}
	cmd := exec.Command(python, "-m", "unittest", "-v", "test_airlock_client")
	cmd.Dir = "../python"
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\nOK") {
		t.Fatalf("python unit tests failed: %v\n%s", err, out)
	}
}
