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
	"unicode/utf8"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/bearer"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"github.com/airlock-dev/airlock/pkg/token"
)

// MsgDirectDisabled is direct_access's 403 when no gateway is configured.
const MsgDirectDisabled = "403 Forbidden - Direct connections are disabled"

// Gateway paths the indirect path forwards to (the AI gateway dialect).
const (
	GatewayCompletions = "/v2/code/completions"
	GatewayGenerations = "/v2/code/generations"
	GatewaySuggestions = "/v4/code/suggestions" // generations as SSE
)

// Field bounds of the indirect path, in characters as GitLab counts them.
// GitLab accepts a cursor context up to 400,000 characters and trims it to
// the 100,000 nearest the cursor before forwarding; the gateway refuses
// more than 100,000.
const (
	maxFileName      = 255
	maxCursorContext = 400_000
	forwardedContext = 100_000
	maxContextItems  = 100
	maxContextItem   = 100_000
	maxInstruction   = 100_000
	maxForwardedHdr  = 1024 // User-Agent and the Language Server version, forwarded when no longer
	// maxAnswer bounds the answer relayed back; past it the relay stops.
	maxAnswer = 16 << 20
)

// mint applies the user's mint limit and mints a token for features.
// It writes the refusal (403, 429, 503) and returns nil when it fails.
func (a *API) mint(w http.ResponseWriter, r *http.Request, id authn.Identity, features ...feature.Feature) *minter.Token {
	if a.limited(w, r, id) {
		return nil
	}
	names := make([]string, len(features))
	for i, f := range features {
		names[i] = string(f)
	}
	u := store.User{ID: id.UserID, Username: id.Username, Role: id.Role, Features: id.Features}
	tok, err := a.cfg.Minter.Mint(r.Context(), u, names, 0)
	if errors.Is(err, minter.ErrNotEntitled) {
		writeMessage(w, http.StatusForbidden)
		return nil
	}
	if err != nil {
		a.cfg.Logger.Error().Err(err).Str("user", id.Username).Msg("minting a token for the REST API failed")
		writeMessage(w, http.StatusServiceUnavailable)
		return nil
	}
	return tok
}

// publicHeaders are the x-gitlab-* headers a client sends with tok to the
// gateway, as GitLab's direct_access returns them.
func (a *API) publicHeaders(tok *minter.Token) map[string]string {
	return map[string]string{
		token.MDInstanceID:   a.cfg.InstanceID,
		token.MDRealm:        token.RealmSelfManaged,
		token.MDGlobalUserID: tok.Claims.GlobalUserID,
		token.MDHostName:     a.cfg.HostName,
		token.MDVersion:      InstanceVersion,
		http.CanonicalHeaderKey(token.MDAuthType): token.AuthTypeOIDC,
		"X-Gitlab-Model-Prompt-Cache-Enabled":     "false",
	}
}

// directAccess answers POST /api/v4/code_suggestions/direct_access: a
// token the IDE uses against the gateway directly, the gateway's URL and
// the headers to send (201).
func (a *API) directAccess(w http.ResponseWriter, r *http.Request, id authn.Identity) {
	if !codeSuggestionsAllowed(id) {
		writeMessage(w, http.StatusForbidden)
		return
	}
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		ProjectPath string `json:"project_path"` // accepted; Airlock has no projects
	}
	if !decodeObject(w, b, &req) {
		return
	}
	if a.cfg.Gateway == nil {
		writeJSON(w, http.StatusForbidden, map[string]string{"message": MsgDirectDisabled})
		return
	}
	tok := a.mint(w, r, id, feature.CodeCompletions, feature.CodeGenerations)
	if tok == nil {
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"base_url": a.cfg.GatewayURL, "token": tok.JWT, "expires_at": tok.Claims.Expiry.Time().Unix(),
		"headers": a.publicHeaders(tok),
	})
}

// completionRequest is the indirect path's body, as far as the issuer
// checks it; every other member is passed through.
type completionRequest struct {
	CurrentFile *struct {
		FileName *string `json:"file_name"`
		Above    *string `json:"content_above_cursor"`
		Below    *string `json:"content_below_cursor"`
	} `json:"current_file"`
	Intent          string `json:"intent"`
	GenerationType  string `json:"generation_type"`
	Stream          bool   `json:"stream"`
	UserInstruction string `json:"user_instruction"`
	Context         []struct {
		Name    string `json:"name"`
		Content string `json:"content"`
	} `json:"context"`
}

// validate returns GitLab's parameter error for req, or "".
func (req *completionRequest) validate() string {
	cf := req.CurrentFile
	switch {
	case cf == nil:
		return "current_file is missing"
	case cf.FileName == nil:
		return "current_file[file_name] is missing"
	case cf.Above == nil:
		return "current_file[content_above_cursor] is missing"
	case utf8.RuneCountInString(*cf.FileName) > maxFileName:
		return fmt.Sprintf("current_file[file_name] is too long (maximum is %d characters)", maxFileName)
	case utf8.RuneCountInString(*cf.Above) > maxCursorContext:
		return fmt.Sprintf("current_file[content_above_cursor] is too long (maximum is %d characters)", maxCursorContext)
	case cf.Below != nil && utf8.RuneCountInString(*cf.Below) > maxCursorContext:
		return fmt.Sprintf("current_file[content_below_cursor] is too long (maximum is %d characters)", maxCursorContext)
	case req.Intent != "" && req.Intent != "completion" && req.Intent != "generation":
		return "intent does not have a valid value"
	case req.GenerationType != "" && req.GenerationType != "comment" && req.GenerationType != "empty_function" && req.GenerationType != "small_file":
		return "generation_type does not have a valid value"
	case utf8.RuneCountInString(req.UserInstruction) > maxInstruction:
		return fmt.Sprintf("user_instruction is too long (maximum is %d characters)", maxInstruction)
	case len(req.Context) > maxContextItems:
		return fmt.Sprintf("context has too many items (maximum is %d)", maxContextItems)
	}
	for i, c := range req.Context {
		if utf8.RuneCountInString(c.Content) > maxContextItem {
			return fmt.Sprintf("context[%d][content] is too long (maximum is %d characters)", i, maxContextItem)
		}
		if utf8.RuneCountInString(c.Name) > maxFileName {
			return fmt.Sprintf("context[%d][name] is too long (maximum is %d characters)", i, maxFileName)
		}
	}
	return ""
}

// generation reports whether req is a code generation: its intent, or
// without one, whether the user gave an instruction.
func (req *completionRequest) generation() bool {
	if req.Intent != "" {
		return req.Intent == "generation"
	}
	return req.UserInstruction != ""
}

// lastRunes returns the last n characters of s; firstRunes the first n.
func lastRunes(s string, n int) string {
	if c := utf8.RuneCountInString(s); c > n {
		for range c - n {
			_, size := utf8.DecodeRuneInString(s)
			s = s[size:]
		}
	}
	return s
}

func firstRunes(s string, n int) string {
	i := 0
	for range n {
		if i >= len(s) {
			return s
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i]
}

// requestModelFields are members a client must not choose: the model the
// gateway calls is the administrator's, never the IDE user's.
var requestModelFields = []string{"private_token", "model_provider", "model_endpoint", "model_api_key",
	"model_identifier", "model_name", "model_metadata", "prompt_components", "prompt", "prompt_id", "prompt_version"}

// forwardBody builds the gateway's body and path from the client's body
// raw (already validated into req): the client's members pass through,
// minus requestModelFields, with the cursor context trimmed to what the
// gateway accepts, plus what the chosen route needs.
func forwardBody(raw []byte, req *completionRequest, sse bool) (string, []byte, error) {
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		return "", nil, err
	}
	for _, k := range requestModelFields {
		delete(body, k)
	}
	var cf map[string]json.RawMessage
	if err := json.Unmarshal(body["current_file"], &cf); err != nil {
		return "", nil, err
	}
	above := lastRunes(*req.CurrentFile.Above, forwardedContext)
	below := ""
	if req.CurrentFile.Below != nil {
		below = firstRunes(*req.CurrentFile.Below, forwardedContext)
	}
	set := func(m map[string]json.RawMessage, k string, v any) {
		b, _ := json.Marshal(v) // strings, numbers and maps of them: cannot fail
		m[k] = b
	}
	set(cf, "content_above_cursor", above)
	set(cf, "content_below_cursor", below)
	set(body, "current_file", cf)
	path := GatewayCompletions
	switch {
	case !req.generation():
		set(body, "prompt_version", 1)
	case sse:
		path = GatewaySuggestions
		payload := map[string]any{
			"file_name": *req.CurrentFile.FileName, "content_above_cursor": above, "content_below_cursor": below,
			"stream": req.Stream, "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0",
			"prompt_enhancer": map[string]any{"user_instruction": req.UserInstruction},
		}
		if lang, ok := cf["language_identifier"]; ok {
			payload["language_identifier"] = lang
		}
		set(body, "prompt_components", []any{map[string]any{"type": "code_editor_generation", "payload": payload}})
	default:
		path = GatewayGenerations
		set(body, "prompt_version", 2)
		set(body, "prompt", req.UserInstruction)
		set(body, "prompt_id", "code_suggestions/generations")
	}
	out, err := json.Marshal(body)
	return path, out, err
}

// relayedHeaders are the gateway's response headers the IDE receives.
var relayedHeaders = []string{"Content-Type", "X-Streaming-Format", "Retry-After"}

// completions answers POST /api/v4/code_suggestions/completions, the
// indirect path: it mints a token for the user and forwards the request to
// the gateway with the headers GitLab adds, relaying the gateway's status,
// content type, streaming format and body as they arrive.
func (a *API) completions(w http.ResponseWriter, r *http.Request, id authn.Identity) {
	if !codeSuggestionsAllowed(id) {
		writeMessage(w, http.StatusForbidden)
		return
	}
	raw, ok := readBody(w, r)
	if !ok {
		return
	}
	var req completionRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		writeParamError(w, "the request body is not a JSON object of the documented parameters")
		return
	}
	if msg := req.validate(); msg != "" {
		writeParamError(w, msg)
		return
	}
	if a.cfg.Gateway == nil {
		writeMessage(w, http.StatusServiceUnavailable)
		return
	}
	sse := sseAccepted(r.Header.Get("X-Supports-Sse-Streaming"))
	path, body, err := forwardBody(raw, &req, sse)
	if err != nil {
		writeParamError(w, "the request body is not a JSON object of the documented parameters")
		return
	}
	f := feature.CodeCompletions
	if req.generation() {
		f = feature.CodeGenerations
	}
	tok := a.mint(w, r, id, f)
	if tok == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.ForwardTimeout)
	defer cancel()
	// The server's write timeout is for ordinary answers; a relayed stream
	// may take the forward's whole bound. Socket deadlines are wall-clock
	// time, not the injected clock's.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(a.cfg.ForwardTimeout + 5*time.Second))
	start := time.Now()
	resp, err := a.cfg.Gateway.Forward(ctx, path, a.forwardHeader(r, tok), body)
	if err != nil {
		switch {
		case r.Context().Err() != nil: // the client left: nobody to answer
		case errors.Is(err, context.DeadlineExceeded):
			writeMessage(w, http.StatusGatewayTimeout)
		default:
			a.cfg.Logger.Warn().Err(err).Str("path", path).Msg("forwarding a code suggestion to the gateway failed")
			writeMessage(w, http.StatusBadGateway)
		}
		return
	}
	defer resp.Body.Close()
	relay(w, resp)
	a.cfg.Logger.Debug().Str("user", id.Username).Str("path", path).Int("status", resp.StatusCode).
		Dur("took", time.Since(start)).Msg("code suggestion forwarded to the gateway")
}

// sseAccepted reads X-Supports-Sse-Streaming as GitLab does: true or 1.
func sseAccepted(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// forwardHeader is what GitLab sends the gateway with a minted token.
func (a *API) forwardHeader(r *http.Request, tok *minter.Token) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(token.MDAuthorization, bearer.Format(tok.JWT))
	for k, v := range a.publicHeaders(tok) {
		h.Set(k, v)
	}
	h.Set("X-Gitlab-Deployment-Type", "self-managed")
	h.Set(rpcserver.RequestIDKey, rpcserver.RequestID(r.Header.Get(rpcserver.RequestIDKey)))
	h.Set("X-Gitlab-Rails-Send-Start", strconv.FormatFloat(float64(a.cfg.Now().UnixNano())/1e9, 'f', 6, 64))
	for _, k := range []string{"User-Agent", "X-Gitlab-Language-Server-Version"} {
		if v := r.Header.Get(k); v != "" && len(v) <= maxForwardedHdr {
			h.Set(k, v)
		}
	}
	return h
}

// relay copies the gateway's answer to w: status, relayedHeaders, then
// the body, flushed as it arrives, at most maxAnswer bytes. It stops when
// the client stops taking it (the caller's context then ends the forward).
func relay(w http.ResponseWriter, resp *http.Response) {
	for _, k := range relayedHeaders {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	src := io.LimitReader(resp.Body, maxAnswer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
