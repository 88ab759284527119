// Package telemetry sets up OpenTelemetry tracing for Airlock's binaries:
// spans are exported over OTLP/gRPC when an endpoint is configured, and
// nothing is recorded or sent otherwise. Trace context propagates with the
// W3C traceparent header across tool → gateway → issuer and model servers.
package telemetry

import (
	"context"
	"flag"
	"fmt"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP/gRPC collector (host:port). Empty disables
	// export: no spans are recorded.
	Endpoint string
	// Insecure sends spans without TLS (a collector on loopback or a sidecar).
	Insecure bool
	// SampleRatio is the fraction of new traces recorded (parent-based;
	// default 1).
	SampleRatio float64
}

// Setup installs the global tracer provider and propagator for service and
// returns a shutdown function that flushes pending spans. With no endpoint
// it installs only the propagator, so trace context still flows through.
func Setup(ctx context.Context, service string, c Config) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if c.Endpoint == "" {
		return func(context.Context) error { return nil }, nil
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(c.Endpoint)}
	if c.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("OTLP exporter for %s: %w", c.Endpoint, err)
	}
	ratio := c.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// ServerOptions trace incoming gRPC calls when c exports spans, and add
// nothing otherwise (the stats handler costs on every call and message).
func ServerOptions(c Config) []grpc.ServerOption {
	if c.Endpoint == "" {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(ServerHandler())}
}

// DialOptions trace outgoing gRPC calls when c exports spans.
func DialOptions(c Config) []grpc.DialOption {
	if c.Endpoint == "" {
		return nil
	}
	return []grpc.DialOption{ClientOption()}
}

// ServerHandler traces incoming gRPC calls (health checks excluded).
func ServerHandler() stats.Handler {
	return otelgrpc.NewServerHandler(otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
		return info.FullMethodName != "/grpc.health.v1.Health/Check" && info.FullMethodName != "/grpc.health.v1.Health/Watch"
	}))
}

// HTTPTransport returns a wrapper that traces outgoing HTTP requests and
// propagates trace context (traceparent) to the server, or nil when c
// exports nothing: the wrapper clones every request, which is not worth it
// when no span is recorded.
func HTTPTransport(c Config) func(http.RoundTripper) http.RoundTripper {
	if c.Endpoint == "" {
		return nil
	}
	return func(t http.RoundTripper) http.RoundTripper { return otelhttp.NewTransport(t) }
}

// ClientOption traces outgoing gRPC calls and propagates trace context.
func ClientOption() grpc.DialOption { return grpc.WithStatsHandler(otelgrpc.NewClientHandler()) }

// RegisterFlags adds --otlp-endpoint, --otlp-insecure and
// --trace-sample-ratio to fs, filling c.
func RegisterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Endpoint, "otlp-endpoint", "", "OTLP/gRPC collector (host:port) to export traces to; empty: no tracing")
	fs.BoolVar(&c.Insecure, "otlp-insecure", false, "send traces to the collector without TLS")
	fs.Float64Var(&c.SampleRatio, "trace-sample-ratio", 1, "fraction of new traces recorded (parent-based)")
}
