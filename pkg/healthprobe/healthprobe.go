// Package healthprobe implements the `healthcheck` subcommand every Airlock
// binary has: it asks a gRPC server's standard health service whether it is
// SERVING. Container images have no shell, so their health checks run the
// binary itself.
package healthprobe

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
