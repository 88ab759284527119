package app

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// metrics are the gateway's own Prometheus series (gRPC server metrics come
// from rpcserver, auth rejections from the verifier).
type metrics struct {
	stream grpc.StreamServerInterceptor // counts active streams

	keysetRevision prometheus.Gauge
	keysetAge      prometheus.Gauge
	revocationsAge prometheus.Gauge
	activeStreams  prometheus.Gauge
	upstream       *prometheus.HistogramVec
	ttft           *prometheus.HistogramVec
	chunks         *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &metrics{
		keysetRevision: prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_gateway_keyset_revision", Help: "Revision of the issuer key set in use."}),
		keysetAge:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_gateway_keyset_age_seconds", Help: "Seconds since the key set was last confirmed by its source."}),
		revocationsAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_gateway_revocations_age_seconds",
			Help: "How stale the revocation view may be: 0 while the issuer's revocation watch is up, else seconds since it was last up."}),
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "airlock_gateway_active_streams", Help: "Completion streams in progress."}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "airlock_gateway_upstream_duration_seconds", Help: "Whole upstream call duration.", Buckets: buckets},
			[]string{"model", "provider"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "airlock_gateway_upstream_time_to_first_token_seconds", Help: "Upstream request sent → first text delta.", Buckets: buckets},
			[]string{"model", "provider"}),
		chunks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_gateway_streamed_chunks_total", Help: "Text deltas relayed to callers."},
			[]string{"model", "provider"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_gateway_upstream_errors_total", Help: "Failed upstream attempts by gRPC code they map to."},
			[]string{"model", "provider", "code"}),
	}
	reg.MustRegister(m.keysetRevision, m.keysetAge, m.revocationsAge, m.activeStreams, m.upstream, m.ttft, m.chunks, m.upstreamErrors)
	m.stream = func(s any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		m.activeStreams.Inc()
		defer m.activeStreams.Dec()
		return h(s, ss)
	}
	return m
}

// Upstream implements completion.Observer.
func (m *metrics) Upstream(model, provider string, ttft, total time.Duration, chunks int, err error) {
	m.upstream.WithLabelValues(model, provider).Observe(total.Seconds())
	if chunks > 0 {
		m.ttft.WithLabelValues(model, provider).Observe(ttft.Seconds())
		m.chunks.WithLabelValues(model, provider).Add(float64(chunks))
	}
	if err != nil {
		m.upstreamErrors.WithLabelValues(model, provider, errorCode(err)).Inc()
	}
}

func errorCode(err error) string {
	if e, ok := adapter.AsError(err); ok {
		switch e.Kind {
		case adapter.KindAuth, adapter.KindMisconfigured:
			return "FailedPrecondition"
		case adapter.KindRateLimited:
			return "ResourceExhausted"
		case adapter.KindBadRequest:
			return "InvalidArgument"
		case adapter.KindMalformed:
			return "Internal"
		case adapter.KindTimeout:
			return "DeadlineExceeded"
		}
		return "Unavailable"
	}
	var s interface{ GRPCStatus() *status.Status }
	if errors.As(err, &s) {
		return s.GRPCStatus().Code().String()
	}
	return "Unknown"
}
