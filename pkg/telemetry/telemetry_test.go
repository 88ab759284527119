package telemetry

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// collector is a fake OTLP trace collector that keeps what it receives.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
	svc   []string
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				c.svc = append(c.svc, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func listen(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func TestSpansReachTheCollectorOnlyWhenConfigured(t *testing.T) {
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	col := &collector{}
	colAddr := listen(t, func(s *grpc.Server) { coltrace.RegisterTraceServiceServer(s, col) })

	shutdown, err := Setup(context.Background(), "airlock-test", Config{Endpoint: colAddr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := listen(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) }, grpc.StatsHandler(ServerHandler()))
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), ClientOption())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := shutdown(ctx); err != nil { // flushes the batch
		t.Fatal(err)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	var client, server int
	for _, s := range col.spans {
		if s.GetName() == "grpc.health.v1.Health/Check" {
			switch s.GetKind() {
			case tracepb.Span_SPAN_KIND_CLIENT:
				client++
			case tracepb.Span_SPAN_KIND_SERVER:
				server++
			}
		}
	}
	if client != 1 || server != 0 {
		t.Fatalf("exported %d client and %d server health spans; want 1 and 0 (server health checks are not traced)", client, server)
	}
	if len(col.svc) == 0 || col.svc[0] != "airlock-test" {
		t.Fatalf("service.name = %v", col.svc)
	}
}

func TestNoEndpointExportsNothing(t *testing.T) {
	shutdown, err := Setup(context.Background(), "airlock-test", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, recording := otel.Tracer("x").Start(context.Background(), "span"); recording.IsRecording() {
		t.Fatal("a span records with no endpoint configured")
	}
}
