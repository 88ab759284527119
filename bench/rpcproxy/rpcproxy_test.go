package rpcproxy

import (
	"context"
	"net"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a loopback gRPC server with the health service, recording the
// authorization metadata of every call.
func backend(t *testing.T) (*grpc.ClientConn, *health.Server, chan string) {
	t.Helper()
	seen := make(chan string, 16)
	record := func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		select {
		case seen <- firstOf(md.Get("authorization")):
		default:
		}
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context())
			return h(srv, ss)
		}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return cc, hs, seen
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func TestProxyForwardsCallsAndCountsThemByMethod(t *testing.T) {
	be, hs, seen := backend(t)
	p, err := Listen(be)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cc, err := grpc.NewClient(p.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := healthpb.NewHealthClient(cc)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer pat")
	before := p.Counts()

	// Unary, with metadata passed through.
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check through proxy = %v, %v", resp, err)
	}
	if got := <-seen; got != "Bearer pat" {
		t.Fatalf("backend saw authorization %q", got)
	}
	// A backend status comes back unchanged.
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound {
		t.Fatalf("unknown service through proxy = %v, want NotFound", err)
	}
	// Server streaming: two updates arrive in order.
	wctx, cancel := context.WithCancel(ctx)
	w, err := client.Watch(wctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("first watch update = %v, %v", m, err)
	}
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("second watch update = %v, %v", m, err)
	}
	cancel()

	got := Diff(before, p.Counts())
	want := []string{"/grpc.health.v1.Health/Check=2", "/grpc.health.v1.Health/Watch=1"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if p.Total() != 3 {
		t.Fatalf("Total = %d, want 3", p.Total())
	}
}
