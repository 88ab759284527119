package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/airlock-dev/airlock/issuer/httpapi"
	"github.com/airlock-dev/airlock/issuer/internal/testenv"
)

// Requests are counted by the innermost pattern that matched (a nested
// API mux's own), by status, and timed; unknown paths share one label.
func TestHTTPMetricsByRoute(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	api := http.NewServeMux()
	api.HandleFunc("POST /api/v4/things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) })
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(httpapi.Handler(httpapi.Config{Keys: e.Keys, Issuer: testenv.Issuer, Now: e.Clock.Now,
		API: api, APIPatterns: []string{"/api/v4/"}, Registerer: reg}))
	defer srv.Close()
	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	do("GET", httpapi.PathHealth)
	do("GET", httpapi.PathHealth)
	do("POST", "/api/v4/things/1")
	do("POST", "/api/v4/things/2")
	do("POST", "/api/v4/things/3")
	do("GET", "/no/such/path")
	do("GET", "/another/unknown")

	requests, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range requests {
		if mf.GetName() != "airlock_issuer_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var route, code string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "code":
					code = l.GetValue()
				}
			}
			counts[route+" "+code] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"GET /healthz 200":             2,
		"POST /api/v4/things/{id} 429": 3,
		"unmatched 404":                2,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("requests{%s} = %v, want %v (all: %v)", k, counts[k], v, counts)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("series %v, want exactly %v", counts, want)
	}
	if n := testutil.CollectAndCount(reg, "airlock_issuer_http_request_duration_seconds"); n != 3 {
		t.Errorf("%d duration series, want 3 (one per route)", n)
	}
}
