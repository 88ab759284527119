package httpapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/gateway/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recordingVerifier accepts "Bearer ok" and remembers the metadata it saw.
type recordingVerifier struct{ seen chan metadata.MD }

func (v recordingVerifier) VerifyBearer(_ context.Context, _ string, md metadata.MD) (*auth.Identity, error) {
	v.seen <- md
	if strings.Join(md.Get("authorization"), ",") != "Bearer ok" {
		return nil, status.Error(codes.Unauthenticated, auth.MsgForbidden)
	}
	return &auth.Identity{JTI: "jti-1", GlobalUserID: strings.Join(md.Get("x-gitlab-global-user-id"), ",")}, nil
}

// VerifyFrom is the strict rule: it also refuses a request without
// x-gitlab-realm.
func (v recordingVerifier) VerifyFrom(ctx context.Context, client string, md metadata.MD) (*auth.Identity, error) {
	if len(md.Get("x-gitlab-realm")) == 0 {
		v.seen <- md
		return nil, status.Error(codes.Unauthenticated, auth.MsgRealmMismatch)
	}
	return v.VerifyBearer(ctx, client, md)
}

// A dialect whose error envelope is "<status> <message>".
func testDialect(routes ...Route) Dialect {
	return Dialect{Name: "test", Routes: routes, WriteError: func(w http.ResponseWriter, _ *http.Request, e *Error) {
		SetRetryAfter(w.Header(), e)
		w.WriteHeader(e.Status)
		fmt.Fprintf(w, "%d %s", e.Status, e.Message)
	}}
}

func newTestServer(t *testing.T, reg prometheus.Registerer, routes ...Route) (*httptest.Server, chan metadata.MD) {
	t.Helper()
	seen := make(chan metadata.MD, 10)
	h, err := NewHandler(Config{Verifier: recordingVerifier{seen}, Dialects: []Dialect{testDialect(routes...)}, MaxBodyBytes: 16, Logger: zerolog.Nop(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, seen
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestChain(t *testing.T) {
	echo := Route{Pattern: "POST /echo", Name: "echo", Handler: func(w http.ResponseWriter, r *http.Request) {
		b, e := ReadBody(w, r)
		if e != nil {
			w.WriteHeader(e.Status)
			fmt.Fprint(w, e.Message)
			return
		}
		id, _ := auth.IdentityFrom(r.Context())
		fmt.Fprintf(w, "%s|%s|%s", b, id.GlobalUserID, RequestID(r.Context()))
	}}
	public := Route{Pattern: "GET /public", Name: "public", Public: true, Handler: func(w http.ResponseWriter, r *http.Request) {
		_, ok := auth.IdentityFrom(r.Context())
		fmt.Fprintf(w, "identity=%v", ok)
	}}
	boom := Route{Pattern: "GET /boom", Name: "boom", Public: true, Handler: func(http.ResponseWriter, *http.Request) { panic("boom") }}
	reg := prometheus.NewRegistry()
	srv, seen := newTestServer(t, reg, echo, public, boom)

	tests := []struct {
		name       string
		method     string
		path, body string
		hdr        []string
		status     int
		body2      string // exact body, or prefix when it ends in "…"
		requestID  string // "" means a generated one
	}{
		{name: "authenticated, user id forwarded", method: "POST", path: "/echo", body: "hi", hdr: []string{"Authorization", "Bearer ok", "X-Gitlab-Global-User-Id", "u1", "X-Request-Id", "abc"}, status: 200, body2: "hi|u1|abc", requestID: "abc"},
		{name: "no user id: limits key on the token", method: "POST", path: "/echo", body: "hi", hdr: []string{"Authorization", "Bearer ok", "X-Request-Id", "abc"}, status: 200, body2: "hi|token:jti-1|abc", requestID: "abc"},
		{name: "refused by the verifier, in the dialect's envelope", method: "POST", path: "/echo", body: "hi", hdr: []string{"Authorization", "Bearer no"}, status: 401, body2: "401 " + auth.MsgForbidden},
		{name: "declared body too large", method: "POST", path: "/echo", body: strings.Repeat("x", 17), hdr: []string{"Authorization", "Bearer ok"}, status: 413, body2: "413 request body exceeds 16 bytes"},
		{name: "public route skips the verifier", method: "GET", path: "/public", status: 200, body2: "identity=false"},
		{name: "request id with spaces is replaced", method: "GET", path: "/public", hdr: []string{"X-Request-Id", "a b"}, status: 200, body2: "identity=false"},
		{name: "panic becomes 500", method: "GET", path: "/boom", status: 500, body2: "500 internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := do(t, srv, tt.method, tt.path, tt.body, tt.hdr...)
			rid := h.Get("X-Request-Id")
			if code != tt.status || body != tt.body2 || (tt.requestID != "" && rid != tt.requestID) || (tt.requestID == "" && len(rid) != 24) {
				t.Errorf("got %d %q request id %q; want %d %q", code, body, rid, tt.status, tt.body2)
			}
		})
	}
	// The x-gitlab-* headers reach the verifier under their metadata names.
	for len(seen) > 0 {
		<-seen
	}
	do(t, srv, "POST", "/echo", "x", "Authorization", "Bearer ok", "X-Gitlab-Realm", "self-managed", "X-Gitlab-Instance-Id", "i1", "X-Gitlab-Authentication-Type", "oidc")
	md := <-seen
	if strings.Join(md.Get("x-gitlab-realm"), ",") != "self-managed" || strings.Join(md.Get("x-gitlab-instance-id"), ",") != "i1" ||
		strings.Join(md.Get("x-gitlab-authentication-type"), ",") != "oidc" {
		t.Errorf("verifier saw %v", md)
	}
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"echo", "401", 1}, {"echo", "200", 3}, {"boom", "500", 1}, {"public", "200", 2}} {
		if got := requestsTotal(t, reg, "test", c.route, c.code); got != c.want {
			t.Errorf("requests_total{test,%s,%s} = %v, want %v", c.route, c.code, got, c.want)
		}
	}
}

// requestsTotal reads airlock_gateway_http_requests_total{dialect,route,code}.
func requestsTotal(t *testing.T, reg *prometheus.Registry, dialect, route, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "airlock_gateway_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["dialect"] == dialect && got["route"] == route && got["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestFromStatus(t *testing.T) {
	withRetry := func(c codes.Code, d time.Duration) error {
		st, _ := status.New(c, "m").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		return st.Err()
	}
	tests := []struct {
		name   string
		err    error
		status int
		retry  time.Duration
		msg    string
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, "m"), 400, 0, "m"},
		{"unauthenticated", status.Error(codes.Unauthenticated, "m"), 401, 0, "m"},
		{"permission denied", status.Error(codes.PermissionDenied, "m"), 403, 0, "m"},
		{"not found", status.Error(codes.NotFound, "m"), 404, 0, "m"},
		{"rate limited with a hint", withRetry(codes.ResourceExhausted, 3*time.Second), 429, 3 * time.Second, "m"},
		{"rate limited without a hint", status.Error(codes.ResourceExhausted, "m"), 429, time.Second, "m"},
		{"model or configuration failed", status.Error(codes.FailedPrecondition, "m"), 502, 0, "m"},
		{"internal", status.Error(codes.Internal, "m"), 500, 0, "m"},
		{"unavailable keeps its hint", withRetry(codes.Unavailable, 2*time.Second), 503, 2 * time.Second, "m"},
		{"deadline", status.Error(codes.DeadlineExceeded, "m"), 504, 0, "m"},
		{"not a status error is never echoed", fmt.Errorf("secret detail"), 500, 0, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := FromStatus(tt.err)
			if e.Status != tt.status || e.RetryAfter != tt.retry || e.Message != tt.msg {
				t.Errorf("FromStatus = %+v, want %d %v %q", e, tt.status, tt.retry, tt.msg)
			}
		})
	}
}

func TestServeStopsWithTheContext(t *testing.T) {
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, lis, http.NotFoundHandler(), ServeOptions{Grace: time.Second, Logger: zerolog.Nop()})
	}()
	resp, err := http.Get("http://" + lis.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil after ctx ended", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
}

func TestRequireGitLabHeadersUsesTheGRPCRules(t *testing.T) {
	ok := Route{Pattern: "POST /x", Name: "x", Handler: func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }}
	seen := make(chan metadata.MD, 10)
	for _, strict := range []bool{false, true} {
		d := testDialect(ok)
		d.RequireGitLabHeaders = strict
		h, err := NewHandler(Config{Verifier: recordingVerifier{seen}, Dialects: []Dialect{d}, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		code, _, body := do(t, srv, "POST", "/x", "", "Authorization", "Bearer ok")
		srv.Close()
		want, wantBody := 200, "ok"
		if strict {
			want, wantBody = 401, "401 "+auth.MsgRealmMismatch
		}
		if code != want || body != wantBody {
			t.Errorf("strict=%v: got %d %q, want %d %q", strict, code, body, want, wantBody)
		}
	}
}

// A flood of refused requests logs a bounded number of lines (sampled as
// on gRPC) while the metrics count every one; a served request is always
// logged.
func TestRefusalsAreLoggedSampled(t *testing.T) {
	var mu sync.Mutex
	var logs strings.Builder
	logger := zerolog.New(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}))
	seen := make(chan metadata.MD, 1000)
	ok := Route{Pattern: "GET /t", Name: "t", Handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }}
	reg := prometheus.NewRegistry()
	h, err := NewHandler(Config{Verifier: recordingVerifier{seen}, Dialects: []Dialect{testDialect(ok)}, Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	const flood = 200
	for range flood {
		if code, _, _ := do(t, srv, "GET", "/t", "", "Authorization", "Bearer bad"); code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", code)
		}
	}
	if code, _, _ := do(t, srv, "GET", "/t", "", "Authorization", "Bearer ok"); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	mu.Lock()
	refused, served := strings.Count(logs.String(), `"http.status":401`), strings.Count(logs.String(), `"http.status":200`)
	mu.Unlock()
	if refused == 0 || refused > 25 || served != 1 {
		t.Fatalf("logged %d of %d refusals and %d of 1 served request, want a sample (1..25) and 1", refused, flood, served)
	}
}
