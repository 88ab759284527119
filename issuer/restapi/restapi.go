// Package restapi serves the part of a GitLab instance's REST API (/api/v4)
// that an IDE client (the GitLab Language Server) calls to accept an
// instance and get code suggestions: the token and version checks, the
// Code Suggestions direct-connection details, and the indirect path, which
// mints a token for the user and forwards the request to the gateway's AI
// gateway dialect, streaming its answer back unchanged.
//
// Callers authenticate with a personal access token as GitLab accepts it
// (`PRIVATE-TOKEN: <pat>` or `Authorization: Bearer <pat>`), checked by the
// same lookup as the gRPC API. Errors are worded as GitLab words them:
// `{"message": "401 Unauthorized"}` and the like for the instance's own
// refusals, `{"error": "<param> is missing"}` for a bad parameter, and the
// rate limiter's 429 with Retry-After.
package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/bearer"
)

// InstanceVersion is the GitLab version the API answers as (GET
// /api/v4/version, x-gitlab-version). The Language Server uses direct
// connections only from 17.2 on.
const InstanceVersion = "18.9.0"

// Paths served.
const (
	PathVersion           = "/api/v4/version"
	PathUser              = "/api/v4/user"
	PathPATSelf           = "/api/v4/personal_access_tokens/self"
	PathDirectAccess      = "/api/v4/code_suggestions/direct_access"
	PathCompletions       = "/api/v4/code_suggestions/completions"
	PathConnectionDetails = "/api/v4/code_suggestions/connection_details"
	PathEnabled           = "/api/v4/code_suggestions/enabled"
	// PathOAuthTokenInfo is outside /api/v4: the Language Server checks a
	// token of 42 characters or more there, as an OAuth token, and an
	// Airlock PAT is that long.
	PathOAuthTokenInfo = "/oauth/token/info" //nolint:gosec // G101: a route, not a credential
)

// Patterns are the http.ServeMux patterns the API must be mounted under.
var Patterns = []string{"/api/v4/", "GET " + PathOAuthTokenInfo}

// PATs authenticates a personal access token (*authn.PATs).
type PATs interface {
	// Check returns the owner of the PAT presented from the address from
	// (the request's RemoteAddr). authn.ErrInvalidPAT for any PAT that
	// does not authenticate, authn.ErrLockedOut while from may not
	// present one; any other error means the store could not be read.
	Check(ctx context.Context, from, presented string) (authn.Identity, error)
	// RetryAfter is how long from remains locked out.
	RetryAfter(from string) time.Duration
}

// Minter mints a token for a user (*minter.Minter): features empty means
// every entitled feature; minter.ErrNotEntitled when none is.
type Minter interface {
	Mint(ctx context.Context, u store.User, features []string, ttl time.Duration) (*minter.Token, error)
}

// Limiter bounds how often one user mints (*limits.Rate, shared with the
// gRPC MintToken so both count against one budget); nil allows all.
type Limiter interface {
	// Take reports whether key may act now and records the event if so;
	// an error (the shared store unreachable) refuses the call.
	Take(ctx context.Context, key string) (bool, error)
	PerMinute() int
}

// GlobalIDs derives a user's opaque global user id (*globalid.Deriver).
type GlobalIDs interface {
	GlobalUserID(userID uint64) string
}

// Gateway forwards a request to the gateway's HTTP API (*HTTPGateway).
type Gateway interface {
	// Forward POSTs body to path (e.g. /v2/code/completions) with header
	// and returns the gateway's response, whatever its status; the
	// caller closes its body. ctx bounds the whole exchange, the body
	// included, and cancelling it abandons the call. An error means no
	// response was received.
	Forward(ctx context.Context, path string, header http.Header, body []byte) (*http.Response, error)
}

// Config configures New.
type Config struct {
	PATs      PATs
	Minter    Minter
	Limiter   Limiter
	GlobalIDs GlobalIDs
	// Gateway and GatewayURL (the gateway's public API URL, the base_url
	// of direct_access) are both set or both empty. Empty: direct
	// connections are disabled (403) and the indirect path answers 503.
	Gateway    Gateway
	GatewayURL string
	// InstanceID and InstanceURL identify the instance (the minter's
	// sub and iss); HostName is x-gitlab-host-name.
	InstanceID  string
	InstanceURL string
	HostName    string
	// ForwardTimeout bounds one forwarded completion, its streamed
	// answer included (default DefaultForwardTimeout).
	ForwardTimeout time.Duration
	Logger         zerolog.Logger
	Now            func() time.Time
}

// DefaultForwardTimeout bounds a forwarded completion when Config leaves
// it zero.
const DefaultForwardTimeout = 60 * time.Second

// API is the handler of /api/v4.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the API. PATs, Minter, GlobalIDs, InstanceID and InstanceURL
// are required.
func New(cfg Config) (*API, error) {
	if cfg.PATs == nil || cfg.Minter == nil || cfg.GlobalIDs == nil || cfg.InstanceID == "" || cfg.InstanceURL == "" {
		return nil, errors.New("restapi: PATs, Minter, GlobalIDs, InstanceID and InstanceURL are required")
	}
	if (cfg.Gateway == nil) != (cfg.GatewayURL == "") {
		return nil, errors.New("restapi: set Gateway and GatewayURL together")
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.mux.HandleFunc("GET "+PathVersion, a.authed(a.version))
	a.mux.HandleFunc("GET "+PathUser, a.authed(a.user))
	a.mux.HandleFunc("GET "+PathPATSelf, a.authed(a.patSelf))
	a.mux.HandleFunc("POST "+PathDirectAccess, a.authed(a.directAccess))
	a.mux.HandleFunc("POST "+PathCompletions, a.authed(a.completions))
	a.mux.HandleFunc("POST "+PathConnectionDetails, a.authed(a.connectionDetails))
	a.mux.HandleFunc("POST "+PathEnabled, a.authed(a.enabled))
	a.mux.HandleFunc("GET "+PathOAuthTokenInfo, a.tokenInfo)
	a.mux.HandleFunc("/api/v4/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "404 Not Found"})
	})
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// maxBody bounds a request body; GitLab refuses bodies over 600,000
// bytes with 413, and every bounded field fits in it.
const maxBody = 600_000

// handlerFunc is a route's handler, called with the authenticated caller.
type handlerFunc func(w http.ResponseWriter, r *http.Request, id authn.Identity)

// authed authenticates the caller's PAT before h: 401 for a missing or
// invalid one, 503 when the store cannot be read.
func (a *API) authed(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		presented, ok := credential(r.Header)
		if !ok {
			writeMessage(w, http.StatusUnauthorized)
			return
		}
		id, err := a.cfg.PATs.Check(r.Context(), r.RemoteAddr, presented)
		if errors.Is(err, authn.ErrInvalidPAT) {
			writeMessage(w, http.StatusUnauthorized)
			return
		}
		if errors.Is(err, authn.ErrLockedOut) {
			a.lockedOut(w, r)
			return
		}
		if err != nil {
			a.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("personal access token lookup failed")
			writeMessage(w, http.StatusServiceUnavailable)
			return
		}
		h(w, r, id)
	}
}

// lockedOut writes the 429 of an address that presented too many invalid
// PATs, with Retry-After in whole seconds.
func (a *API) lockedOut(w http.ResponseWriter, r *http.Request) {
	wait := a.cfg.PATs.RetryAfter(r.RemoteAddr)
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{"message": authn.MsgLockedOut})
}

// credential returns the PAT of a request: the one PRIVATE-TOKEN header
// if present (GitLab looks there first), else the one `Authorization:
// Bearer` value. Tokens in the query string (GitLab's private_token
// parameter) are not accepted: URLs end up in logs.
func credential(h http.Header) (string, bool) {
	if vs := h.Values("Private-Token"); len(vs) > 0 {
		if len(vs) != 1 || vs[0] == "" {
			return "", false
		}
		return vs[0], true
	}
	vs := h.Values("Authorization")
	if len(vs) != 1 {
		return "", false
	}
	return bearer.Parse(vs[0])
}

// mayUseAPI reports whether id is a user (not the gateway's service
// identity).
func mayUseAPI(id authn.Identity) bool {
	return id.Role == store.RoleUser || id.Role == store.RoleAdmin
}

// limited applies the per-user mint limit: true (and the 429, or the 503
// when the limit cannot be read, written) when id may not mint now.
func (a *API) limited(w http.ResponseWriter, r *http.Request, id authn.Identity) bool {
	if a.cfg.Limiter == nil {
		return false
	}
	ok, err := a.cfg.Limiter.Take(r.Context(), "user:"+id.Username)
	if err != nil {
		a.cfg.Logger.Error().Err(err).Str("path", r.URL.Path).Msg("mint rate limit unavailable")
		writeMessage(w, http.StatusServiceUnavailable)
		return true
	}
	if ok {
		return false
	}
	// The bucket refills one event every 60/perMinute seconds.
	wait := 1
	if pm := a.cfg.Limiter.PerMinute(); pm > 0 {
		wait = max(1, (60+pm-1)/pm)
	}
	w.Header().Set("Retry-After", strconv.Itoa(wait))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"message": map[string]string{"error": MsgRateLimited},
	})
	return true
}

// MsgRateLimited is GitLab's rate limiter's message.
const MsgRateLimited = "This endpoint has been requested too many times. Try again later."

// writeMessage writes GitLab's `{"message": "<code> <text>"}` error.
func writeMessage(w http.ResponseWriter, code int) {
	writeJSON(w, code, map[string]string{"message": fmt.Sprintf("%d %s", code, http.StatusText(code))})
}

// writeParamError writes a parameter error the way GitLab's API framework
// does: 400 `{"error": "<message>"}`.
func writeParamError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// readBody reads a bounded request body. It writes 413 and returns false
// when the body is over maxBody, 400 when it cannot be read.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeMessage(w, http.StatusRequestEntityTooLarge)
		return nil, false
	}
	if err != nil {
		writeParamError(w, "the request body could not be read")
		return nil, false
	}
	return b, true
}

// decodeObject decodes an optional JSON object body into v: an empty body
// leaves v as is. It writes 400 and returns false otherwise.
func decodeObject(w http.ResponseWriter, b []byte, v any) bool {
	if len(b) == 0 {
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeParamError(w, "the request body is not a JSON object of the documented parameters")
		return false
	}
	return true
}
