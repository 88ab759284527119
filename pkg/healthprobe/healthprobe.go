// Package healthprobe implements the `healthcheck` subcommand every Airlock
// binary has: it asks a gRPC server's standard health service whether it is
// SERVING. Container images have no shell, so their health checks run the
// binary itself.
package healthprobe

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Check dials addr and returns nil only if the health service answers
// SERVING for service ("" is the whole server) within timeout. tlsConf nil
// means plaintext.
func Check(ctx context.Context, addr, service string, tlsConf *tls.Config, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	defer cc.Close()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health check %s: %s", addr, s)
	}
	return nil
}

// Main implements `<binary> healthcheck [--addr A] [--service S] [--timeout T]
// [--ca F --cert F --key F --server-name N]` and returns the exit code: 0 iff
// the server answers SERVING.
func Main(binary, defaultAddr string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(binary+" healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", defaultAddr, "gRPC address to probe")
	service := fs.String("service", "", "service name to ask about (empty: the whole server)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	ca := fs.String("ca", "", "CA bundle verifying the server (enables TLS)")
	cert := fs.String("cert", "", "client certificate (mTLS)")
	key := fs.String("key", "", "client key (mTLS)")
	serverName := fs.String("server-name", "", "expected server name in its certificate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var tc *tls.Config
	if *ca != "" || *cert != "" {
		var err error
		if tc, err = tlsconfig.Client(*ca, *cert, *key, *serverName); err != nil {
			fmt.Fprintf(stderr, "%s healthcheck: %v\n", binary, err)
			return 2
		}
	}
	if err := Check(context.Background(), *addr, *service, tc, *timeout); err != nil {
		fmt.Fprintf(stderr, "%s healthcheck: %v%s\n", binary, err, hint(err))
		return 1
	}
	return 0
}

// hint says which flag to change when the probe and the server disagree
// about TLS, or "".
func hint(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "; hint: the server speaks plaintext: probe it without --ca, --cert and --key"
	case strings.Contains(msg, "error reading server preface"):
		return "; hint: the server closed the connection: if it serves TLS, give --ca (and --cert and --key if it requires a client certificate)"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"):
		return "; hint: the server requires a client certificate: give --cert and --key"
	}
	return ""
}
