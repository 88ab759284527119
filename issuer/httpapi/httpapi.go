// Package httpapi serves the issuer's HTTP endpoints for third-party
// verifiers and operators, as a GitLab instance does: the JWK Set at
// /oauth/discovery/keys, OpenID discovery at
// /.well-known/openid-configuration, /healthz and /metrics, and mounts the
// instance's REST API (issuer/restapi) under /api/v4/.
package httpapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/pkg/statuswriter"
	"github.com/airlock-dev/airlock/pkg/token"
)

// Paths served.
const (
	PathJWKS      = "/oauth/discovery/keys"
	PathDiscovery = "/.well-known/openid-configuration"
	PathHealth    = "/healthz"
	PathMetrics   = "/metrics"
)

// Keys is the part of keys.Manager the handler reads.
type Keys interface {
	KeySet() *keys.KeySet
	CacheMaxAge(ks *keys.KeySet, now time.Time) time.Duration
}

// Config configures Handler.
type Config struct {
	Keys Keys
	// Issuer is the instance URL (the iss claim); jwks_uri is built from it.
	Issuer string
	// Metrics serves /metrics; nil leaves the path unrouted.
	Metrics http.Handler
	// Debug, if set, serves /debug/pprof/ (the issuer's --pprof).
	Debug http.Handler
	// API, if set, serves the instance's REST API (issuer/restapi) under
	// APIPatterns, with the methods it allows.
	API         http.Handler
	APIPatterns []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Registerer, if set, receives the HTTP metrics (see instrument); a
	// second Handler on the same Registerer panics, as any duplicate
	// registration does.
	Registerer prometheus.Registerer
}

// Handler returns the HTTP handler. Only GET and HEAD are allowed, except
// under APIPatterns, which are API's.
func Handler(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathJWKS, func(w http.ResponseWriter, _ *http.Request) {
		ks := cfg.Keys.KeySet()
		if ks == nil {
			http.Error(w, "keys not loaded", http.StatusServiceUnavailable)
			return
		}
		age := cfg.Keys.CacheMaxAge(ks, cfg.Now())
		w.Header().Set("Cache-Control", "max-age="+strconv.FormatInt(int64(age/time.Second), 10))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ks.JWKS)
	})
	mux.HandleFunc("GET "+PathDiscovery, func(w http.ResponseWriter, _ *http.Request) {
		algs := map[string]bool{}
		if ks := cfg.Keys.KeySet(); ks != nil {
			for _, k := range ks.Keys {
				algs[k.Alg] = true
			}
		}
		list := make([]string, 0, len(algs))
		for a := range algs {
			list = append(list, a)
		}
		sort.Strings(list)
		doc := map[string]any{
			"issuer":                                cfg.Issuer,
			"jwks_uri":                              strings.TrimRight(cfg.Issuer, "/") + PathJWKS,
			"id_token_signing_alg_values_supported": list,
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      token.ClaimNames(),
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_ = json.NewEncoder(w).Encode(doc)
	})
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Keys.KeySet() == nil {
			http.Error(w, "keys not loaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if cfg.Metrics != nil {
		mux.Handle("GET "+PathMetrics, cfg.Metrics)
	}
	if cfg.Debug != nil {
		mux.Handle("/debug/pprof/", cfg.Debug)
	}
	if cfg.API != nil {
		for _, p := range cfg.APIPatterns {
			mux.Handle(p, cfg.API)
		}
	}
	if cfg.Registerer == nil {
		return mux
	}
	return instrument(mux, cfg.Registerer)
}

// unmatched is the route label of a request no pattern matched.
const unmatched = "unmatched"

// instrument counts h's requests by route and status and times them by
// route: airlock_issuer_http_requests_total{route,code} and
// airlock_issuer_http_request_duration_seconds{route}. The route is the
// ServeMux pattern that matched, the innermost one when muxes nest (the
// REST API's own, e.g. "POST /api/v4/code_suggestions/direct_access"): a
// fixed set, whatever paths clients send. Answers that stream (completions
// forwarded to the gateway) are timed to their end.
func instrument(h http.Handler, reg prometheus.Registerer) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "airlock_issuer_http_requests_total",
		Help: "Finished HTTP requests (JWKS, discovery, health, metrics, the REST API) by route pattern and HTTP status."}, []string{"route", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "airlock_issuer_http_request_duration_seconds",
		Help:    "HTTP request duration, streamed answers included, by route pattern.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}, []string{"route"})
	reg.MustRegister(requests, duration)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := statuswriter.New(w)
		defer func() {
			// ServeMux sets Pattern on the request it was given, which
			// is r, in every mux it passes through.
			route := r.Pattern
			if route == "" {
				route = unmatched
			}
			requests.WithLabelValues(route, strconv.Itoa(sw.Code())).Inc()
			duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		h.ServeHTTP(sw, r)
	})
}
