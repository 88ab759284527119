// Package httpapi serves the gateway's HTTP API listener (--api-http-addr).
// Several dialects share it (the OpenAI-compatible one in httpapi/openai;
// GitLab's own AI gateway wire next), and every route of every dialect runs
// behind one chain: request id, metrics labelled by dialect and route, one
// log line per request carrying the completion core's fields, a bound on
// the body, authentication through the same token verifier as gRPC, and
// recovery. A dialect owns its routes and its error envelope; it calls the
// same completion core as the gRPC service (completion.Service.Serve and
// ServeStream), so limits, routing, retries and adapters are shared.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/pkg/connlimit"
	"github.com/airlock-dev/airlock/pkg/echo"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/statuswriter"
	"github.com/airlock-dev/airlock/pkg/token"
)

// Verifier authenticates a request from its headers (*auth.Verifier).
// VerifyFrom applies the gRPC rules (every x-gitlab-* header the real AI
// gateway checks must be sent); VerifyBearer lets absent x-gitlab-* headers
// stand in for the claims. Both return the identity or a status error:
// Unauthenticated, Unavailable when no keys are loaded, ResourceExhausted
// when the client address is throttled, or the context's error.
type Verifier interface {
	VerifyFrom(ctx context.Context, client string, md metadata.MD) (*auth.Identity, error)
	VerifyBearer(ctx context.Context, client string, md metadata.MD) (*auth.Identity, error)
}

// Route is one endpoint of a dialect.
type Route struct {
	// Pattern is the http.ServeMux pattern, method included
	// ("POST /v1/chat/completions").
	Pattern string
	// Name labels the route in metrics and logs ("chat_completions").
	Name string
	// Public routes skip authentication (health, unknown-path answers).
	Public bool
	// Handler serves the request. Behind authentication the request's
	// context carries the verified identity (auth.IdentityFrom).
	Handler http.HandlerFunc
}

// Dialect is one HTTP API spoken on the listener.
type Dialect struct {
	// Name labels the dialect in metrics and logs ("openai").
	Name   string
	Routes []Route
	// WriteError writes e in the dialect's envelope, for the refusals the
	// shared chain makes (authentication, body too large, a recovered
	// panic). Required.
	WriteError func(w http.ResponseWriter, r *http.Request, e *Error)
	// RequireGitLabHeaders authenticates with the gRPC rules
	// (Verifier.VerifyFrom: X-Gitlab-Authentication-Type and the realm,
	// instance and user headers are checked as the real AI gateway checks
	// them), for dialects whose callers are GitLab instances and IDEs.
	// False accepts plain bearer tokens (Verifier.VerifyBearer).
	RequireGitLabHeaders bool
}

// Config configures the handler.
type Config struct {
	Verifier Verifier
	Dialects []Dialect
	// MaxBodyBytes bounds a request body, as --max-recv-bytes bounds a gRPC
	// message (default 4 MiB). BodyReadTimeout bounds reading it (30 s).
	MaxBodyBytes    int64
	BodyReadTimeout time.Duration
	Logger          zerolog.Logger
	// Registerer receives the HTTP API's metrics; nil records none.
	Registerer prometheus.Registerer
}

// NewHandler returns the listener's handler. It fails when a dependency is
// missing, a dialect has no WriteError, or two routes share a pattern.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.Verifier == nil || len(cfg.Dialects) == 0 {
		return nil, errors.New("httpapi: Verifier and at least one Dialect are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = 30 * time.Second
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	refusals := cfg.Logger.Sample(rpcserver.DefaultRefusalSampler()) // one sampler for the whole listener
	seen := map[string]bool{}
	for _, d := range cfg.Dialects {
		if d.Name == "" || d.WriteError == nil {
			return nil, fmt.Errorf("httpapi: dialect %q needs a Name and WriteError", d.Name)
		}
		for _, rt := range d.Routes {
			if seen[rt.Pattern] {
				return nil, fmt.Errorf("httpapi: route %q registered twice", rt.Pattern)
			}
			seen[rt.Pattern] = true
			mux.Handle(rt.Pattern, chain(cfg, m, refusals, d, rt))
		}
	}
	return mux, nil
}

// headers forwarded to the verifier, under their gRPC metadata names.
var authHeaders = []string{token.MDAuthorization, token.MDAuthType, token.MDInstanceID, token.MDRealm, token.MDGlobalUserID}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	bodyKey
)

type bodyLimits struct {
	timeout time.Duration
}

// RequestID returns the request id the chain gave this request (the
// caller's X-Request-Id when usable, else a fresh one), or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// ReadBody reads the request body whole, within the listener's size and
// time bounds. It returns a 413 *Error when the body is larger than
// MaxBodyBytes, a 400 one when it cannot be read in time or at all.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	rc := http.NewResponseController(w)
	if l, ok := r.Context().Value(bodyKey).(bodyLimits); ok {
		_ = rc.SetReadDeadline(time.Now().Add(l.timeout))
		// No deadline once the body is read: the server's background read
		// (which notices a client going away) must not time out mid-stream.
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	b, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", tooLarge.Limit)}
	case err != nil:
		return nil, &Error{Status: http.StatusBadRequest, Message: "could not read the request body"}
	}
	return b, nil
}

// chain wraps one route's handler.
func chain(cfg Config, m *metrics, refusals zerolog.Logger, d Dialect, rt Route) http.Handler {
	inflight := m.inflight.WithLabelValues(d.Name, rt.Name)
	duration := m.duration.WithLabelValues(d.Name, rt.Name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := rpcserver.RequestID(single(r.Header.Values(rpcserver.RequestIDKey)))
		w.Header().Set(rpcserver.RequestIDKey, rid)
		ctx := logging.InjectFields(r.Context(), logging.Fields{"request_id", rid, "dialect", d.Name, "route", rt.Name})
		ctx = context.WithValue(ctx, requestIDKey, rid)
		ctx = context.WithValue(ctx, bodyKey, bodyLimits{timeout: cfg.BodyReadTimeout})
		sw := statuswriter.New(w)
		inflight.Inc()
		defer func() {
			p := recover()
			if p != nil && p != http.ErrAbortHandler {
				cfg.Logger.Error().Str("request_id", rid).Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("recovered from panic in HTTP handler")
				if !sw.Wrote() {
					d.WriteError(sw, r, &Error{Status: http.StatusInternalServerError, Message: "internal error"})
				}
			}
			inflight.Dec()
			code := sw.Code()
			m.requests.WithLabelValues(d.Name, rt.Name, strconv.Itoa(code)).Inc()
			took := time.Since(start)
			duration.Observe(took.Seconds())
			l := cfg.Logger
			if code >= 400 && code < 500 {
				// Refusals the caller causes are sampled as on gRPC (a flood
				// costs bounded disk); the metrics above count every one.
				l = refusals
			}
			logRequest(l, ctx, r, code, took)
			if p == http.ErrAbortHandler {
				panic(p)
			}
		}()
		if r.ContentLength > cfg.MaxBodyBytes {
			d.WriteError(sw, r, &Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", cfg.MaxBodyBytes)})
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, cfg.MaxBodyBytes)
		if !rt.Public {
			verify := cfg.Verifier.VerifyBearer
			if d.RequireGitLabHeaders {
				verify = cfg.Verifier.VerifyFrom
			}
			id, err := verify(ctx, connlimit.Key(r.RemoteAddr), headerMD(r.Header))
			if err != nil {
				d.WriteError(sw, r, FromStatus(err))
				return
			}
			if id.GlobalUserID == "" {
				// Plain SDKs do not say which user they act for: the
				// per-user limits then key on the token.
				cp := *id
				cp.GlobalUserID = "token:" + id.JTI
				id = &cp
			}
			ctx = auth.WithIdentity(ctx, id)
		}
		rt.Handler(sw, r.WithContext(ctx))
	})
}

func headerMD(h http.Header) metadata.MD {
	md := make(metadata.MD, len(authHeaders))
	for _, k := range authHeaders {
		if vs := h.Values(k); len(vs) > 0 {
			md[k] = vs
		}
	}
	return md
}

func single(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return ""
}

// logRequest writes one line per request: the chain's fields, what the
// completion core added (user, jti, feature, model, attempts, upstream
// timings) and the outcome.
func logRequest(l zerolog.Logger, ctx context.Context, r *http.Request, code int, took time.Duration) {
	e := l.Info()
	if code >= 500 {
		e = l.Warn()
	}
	fields := logging.ExtractFields(ctx)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		e = e.Interface(k, fields[i+1])
	}
	e.Str("http.method", r.Method).Str("http.path", echo.Message(strings.ToValidUTF8(r.URL.Path, "?"))).Int("http.status", code).
		Float64("time_ms", float64(took.Microseconds())/1000).Msg("finished HTTP request")
}
