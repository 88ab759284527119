package rpcserver

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverMetrics records the standard gRPC server metrics, with the names,
// labels and buckets of go-grpc-middleware's prometheus provider
// (grpc_server_started_total, grpc_server_handled_total{grpc_code},
// grpc_server_msg_received_total, grpc_server_msg_sent_total,
// grpc_server_handling_seconds), at a cost per call rather than per
// message: a stream counts its messages in two atomics and adds them to the
// counters once, when it ends. (The provider looks up a labelled counter on
// every message, which on a token stream is every relayed chunk.)
type serverMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	handling                         *prometheus.HistogramVec
	methods                          sync.Map // full method name → *methodMetrics
}

// methodMetrics are one method's label-resolved series.
type methodMetrics struct {
	labels                  [3]string // grpc_type, grpc_service, grpc_method
	started, received, sent prometheus.Counter
	handling                prometheus.Observer
}

func newServerMetrics() *serverMetrics {
	names := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return &serverMetrics{
		started:  counter("grpc_server_started_total", "Total number of RPCs started on the server.", names),
		handled:  counter("grpc_server_handled_total", "Total number of RPCs completed on the server, regardless of success or failure.", append(names, "grpc_code")),
		received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", names),
		sent:     counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", names),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets}, names),
	}
}

// Describe implements prometheus.Collector.
func (m *serverMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	m.handling.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	m.handling.Collect(ch)
}

// method returns the series of fullMethod (/pkg.Service/Method) for calls
// of type typ, creating them on first use.
func (m *serverMetrics) method(fullMethod, typ string) *methodMetrics {
	key := typ + fullMethod
	if mm, ok := m.methods.Load(key); ok {
		return mm.(*methodMetrics)
	}
	service, name, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	mm := &methodMetrics{labels: [3]string{typ, service, name}}
	mm.started = m.started.WithLabelValues(mm.labels[:]...)
	mm.received = m.received.WithLabelValues(mm.labels[:]...)
	mm.sent = m.sent.WithLabelValues(mm.labels[:]...)
	mm.handling = m.handling.WithLabelValues(mm.labels[:]...)
	actual, _ := m.methods.LoadOrStore(key, mm)
	return actual.(*methodMetrics)
}

func (m *serverMetrics) finish(mm *methodMetrics, err error, start time.Time) {
	m.handled.WithLabelValues(mm.labels[0], mm.labels[1], mm.labels[2], code(err).String()).Inc()
	mm.handling.Observe(time.Since(start).Seconds())
}

// code is the status code a handler's error reaches the caller with.
func code(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return status.FromContextError(err).Code()
}

func (m *serverMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	mm := m.method(info.FullMethod, "unary")
	mm.started.Inc()
	mm.received.Inc()
	resp, err := h(ctx, req)
	if err == nil {
		mm.sent.Inc()
	}
	m.finish(mm, err, start)
	return resp, err
}

func (m *serverMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	typ := "bidi_stream"
	switch {
	case !info.IsClientStream:
		typ = "server_stream"
	case !info.IsServerStream:
		typ = "client_stream"
	}
	mm := m.method(info.FullMethod, typ)
	mm.started.Inc()
	cs := &countingStream{ServerStream: ss}
	err := h(srv, cs)
	mm.sent.Add(float64(cs.sent.Load()))
	mm.received.Add(float64(cs.received.Load()))
	m.finish(mm, err, start)
	return err
}

// countingStream counts the messages that went each way. Atomics, because
// a handler may send from another goroutine than the one that receives.
type countingStream struct {
	grpc.ServerStream
	sent, received atomic.Int64
}

func (s *countingStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.sent.Add(1)
	}
	return err
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.received.Add(1)
	}
	return err
}
