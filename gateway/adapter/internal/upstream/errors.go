package upstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// maxErrorBody bounds how much of a non-2xx body is read: error documents are
// small, and a hostile server must not make the gateway buffer megabytes.
const maxErrorBody = 16 << 10

// maxMessage bounds the message shown to callers.
const maxMessage = 300

// errorDoc covers the error bodies model servers send: OpenAI-style
// {"error":{"message","type","code"}}, Anthropic {"type":"error","error":{...}},
// Ollama/TGI {"error":"...","error_type":"..."}, llama.cpp's bare
// {"code","message","type"} and vLLM's older {"object":"error","message",...}.
type errorDoc struct {
	Error     errorField      `json:"error"`
	Message   string          `json:"message"`
	Type      string          `json:"type"`
	Code      json.RawMessage `json:"code"`
	ErrorType string          `json:"error_type"`
}

type errorField struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
	present bool
}

func (f *errorField) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0 || string(b) == "null":
		return nil
	case b[0] == '"':
		f.present = true
		return json.Unmarshal(b, &f.Message)
	case b[0] == '{':
		type plain errorField
		var p plain
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		*f = errorField(p)
		f.present = true
		return nil
	default:
		f.present = true
		return nil
	}
}

// fields extracts type, code and message from an error document, preferring
// the nested error object.
func (d *errorDoc) fields() (typ, code, msg string) {
	if d.Error.present {
		typ, code, msg = d.Error.Type, rawCode(d.Error.Code), d.Error.Message
	}
	if typ == "" {
		typ = d.ErrorType
	}
	if typ == "" && d.Type != "error" {
		typ = d.Type
	}
	if code == "" {
		code = rawCode(d.Code)
	}
	if msg == "" {
		msg = d.Message
	}
	return typ, code, msg
}

// rawCode renders a JSON code that may be a string, a number or null.
func rawCode(b json.RawMessage) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		return ""
	}
	if b[0] == '"' {
		var s string
		if json.Unmarshal(b, &s) == nil {
			return s
		}
		return ""
	}
	if _, err := strconv.ParseFloat(string(b), 64); err == nil {
		return string(b)
	}
	return ""
}

// HasError reports whether a JSON stream frame carries a non-null "error"
// member: the rule that turns any frame into an in-stream failure.
func HasError(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// StreamError builds the KindStreamError for an error reported inside a 200
// stream. data is the frame (or llama.cpp `error:` line value); secret is
// the configured API key, scrubbed from the message.
func StreamError(data []byte, secret string) *adapter.Error {
	var doc errorDoc
	_ = json.Unmarshal(data, &doc) // a frame we cannot parse still is an error
	typ, code, msg := doc.fields()
	if msg == "" {
		msg = "model server reported an error in the stream"
	}
	return &adapter.Error{
		Kind:      adapter.KindStreamError,
		Type:      Scrub(typ, secret),
		Code:      Scrub(code, secret),
		Message:   Scrub(msg, secret),
		Retryable: retryableType(typ) || retryableCode(code),
	}
}

// retryableType lists upstream error classes that mean "try again later".
func retryableType(typ string) bool {
	switch strings.ToLower(typ) {
	case "overloaded_error", "overloaded", "server_error", "api_error", "rate_limit_error",
		"timeout_error", "unavailable_error", "service_unavailable", "internal_server_error":
		return true
	}
	return false
}

func retryableCode(code string) bool {
	n, err := strconv.Atoi(code)
	return err == nil && (n == http.StatusTooManyRequests || n >= 500 && n <= 599)
}

// HTTPError classifies a non-2xx response: the kind by status, the upstream
// type, code and (scrubbed) message from a bounded read of the body, and the
// retry hint from the headers. It does not close the body.
func HTTPError(resp *http.Response, secret string, now func() time.Time) *adapter.Error {
	status := resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var doc errorDoc
	var typ, code, msg string
	if json.Unmarshal(body, &doc) == nil {
		typ, code, msg = doc.fields()
	}
	if msg == "" {
		msg = http.StatusText(status)
		if msg == "" {
			msg = "unexpected status"
		}
	}
	e := &adapter.Error{
		HTTPStatus: status,
		Type:       Scrub(typ, secret),
		Code:       Scrub(code, secret),
		Message:    Scrub(msg, secret),
	}
	switch {
	case status >= 300 && status <= 399:
		// Client.Start never follows one: the key stays with the endpoint.
		e.Kind = adapter.KindMisconfigured
		e.Message = "the model server answered with a redirect, which the gateway does not follow: set the model's endpoint to the final URL"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = adapter.KindAuth
	case status == http.StatusTooManyRequests:
		e.Kind, e.Retryable = adapter.KindRateLimited, true
	case status >= 500:
		e.Kind, e.Retryable = adapter.KindUnavailable, true
	case misconfigured(status, typ, code):
		e.Kind = adapter.KindMisconfigured
	default:
		e.Kind = adapter.KindBadRequest
		// An overloaded_error type means "come back later" whatever
		// status a proxy put in front of it.
		e.Retryable = strings.EqualFold(typ, "overloaded_error")
	}
	if e.Retryable {
		e.RetryAfter = RetryAfter(resp.Header, now)
	}
	return e
}

// misconfigured reports whether a 4xx blames the model's configuration
// rather than the caller's request: no such path (404, 405) or no such
// model at the server (OpenAI's model_not_found, whatever the status).
func misconfigured(status int, typ, code string) bool {
	switch {
	case status == http.StatusNotFound, status == http.StatusMethodNotAllowed:
		return true
	case strings.EqualFold(code, "model_not_found"), strings.EqualFold(typ, "model_not_found"),
		strings.EqualFold(typ, "not_found_error"), strings.EqualFold(typ, "NotFoundError"):
		return true
	}
	return false
}

// NotAStream returns the error for a 2xx response whose content type
// cannot be a stream (an HTML or XML page, typically a proxy's login or
// error page in front of the model server), or nil. An absent content
// type, or any other, is left for the decoder to judge.
func NotAStream(h http.Header) *adapter.Error {
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil
	}
	switch mt {
	case "text/html", "application/xhtml+xml", "text/xml", "application/xml":
		return &adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: http.StatusOK,
			Message: fmt.Sprintf("answered with a %s page instead of a stream: something in front of the endpoint (a proxy or login page) answers instead of the model server", mt)}
	}
	return nil
}

// RetryAfter reads the wait hint: retry-after-ms (milliseconds) if present,
// else retry-after as seconds (possibly fractional) or an HTTP-date. It
// returns 0 when there is no usable hint; negative waits become 0.
func RetryAfter(h http.Header, now func() time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e12 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("retry-after"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s > 0 && s < 1e9 {
			return time.Duration(s * float64(time.Second))
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now()); d > 0 {
			return d
		}
	}
	return 0
}

const (
	redacted = "[redacted]"
	withheld = "upstream message withheld"
)

// keyLike matches what API keys and bearer tokens look like in messages:
// OpenAI/Anthropic-style prefixed keys (also masked ones), bearer values, and
// any long unbroken run of token characters (hex/base64 keys, JWT segments).
var keyLike = regexp.MustCompile(`(?i)\bbearer\s+\S+|\b(?:sk|pk|rk|ak|hf|gsk|xai|key)[-_][A-Za-z0-9_*\-]{6,}|[A-Za-z0-9_\-+=]{32,}`)

// Scrub makes an upstream string safe to show a caller: the configured
// secret is removed wherever it appears, anything that looks like a key or
// token is replaced, control characters are dropped, invalid UTF-8 is
// replaced and the result is bounded in length.
func Scrub(s, secret string) string {
	if s == "" {
		return ""
	}
	if secret != "" {
		s = strings.ReplaceAll(s, secret, redacted)
	}
	s = keyLike.ReplaceAllString(s, redacted)
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	if secret != "" && strings.Contains(s, secret) {
		// Only a secret short enough to occur in our own replacement text
		// gets here; fail closed.
		if strings.Contains(withheld, secret) {
			return ""
		}
		return withheld
	}
	return s
}
