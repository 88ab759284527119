package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the HTTP API, labelled by dialect and route (both from fixed
// sets: the routes registered) and the HTTP status.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_gateway_http_requests_total",
			Help: "Finished HTTP API requests by dialect, route and HTTP status."}, []string{"dialect", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "airlock_gateway_http_request_duration_seconds",
			Help:    "HTTP API request duration, streams included, by dialect and route.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"dialect", "route"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "airlock_gateway_http_requests_in_flight",
			Help: "HTTP API requests (and streams) in progress by dialect and route."}, []string{"dialect", "route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
