package auth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts rejections by reason.
type Metrics struct {
	rejections *prometheus.CounterVec
	byReason   map[string]prometheus.Counter
}

// NewMetrics registers airlock_gateway_auth_rejections_total{reason} on reg
// with every reason pre-initialised to zero (so dashboards see the series
// before the first rejection). Registering twice on one registry returns
// the existing collector.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "airlock_gateway_auth_rejections_total",
		Help: "Requests refused by token verification, by reason.",
	}, []string{"reason"})
	if err := reg.Register(cv); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		cv = existing
	}
	m := &Metrics{rejections: cv, byReason: make(map[string]prometheus.Counter, len(Reasons))}
	for _, r := range Reasons {
		m.byReason[r] = cv.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) inc(reason string) {
	if m == nil {
		return
	}
	if c, ok := m.byReason[reason]; ok {
		c.Inc()
		return
	}
	m.rejections.WithLabelValues(reason).Inc()
}
