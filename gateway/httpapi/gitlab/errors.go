package gitlab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
)

// The real gateway's words for model failures.
const (
	msgInferenceFailed = "Inference failed"
	msgTooManyRequests = "Too many requests. Please try again later."
)

// writeError answers e as the real gateway does: 401 as {"error": ...}
// (its authentication middleware's key), everything else as
// {"detail": ...}, with Retry-After when e has one. It is the dialect's
// httpapi.Dialect.WriteError.
func writeError(w http.ResponseWriter, _ *http.Request, e *httpapi.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	httpapi.SetRetryAfter(h, e)
	w.WriteHeader(e.Status)
	var b []byte
	if e.Status == http.StatusUnauthorized {
		b, _ = marshal(struct {
			Error string `json:"error"`
		}{e.Message})
	} else {
		b, _ = marshal(struct {
			Detail string `json:"detail"`
		}{e.Message})
	}
	_, _ = w.Write(b)
}

// marshal encodes v as one line without HTML escaping (messages quote
// <model> placeholders and code).
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return buf.Bytes(), err
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		writeError(w, nil, &httpapi.Error{Status: http.StatusInternalServerError, Message: "internal error"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// unprocessable is a body that fails validation: 422 {"detail": ...}.
func unprocessable(format string, a ...any) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Message: fmt.Sprintf(format, a...)}
}

// failure maps an error of the completion core to the real gateway's
// answer: a model server's 429 is 429 "Too many requests" with its
// Retry-After; any other model failure is 503 "Inference failed" (the
// reason is in the log line, never in the answer); a request the core
// refuses is 422 with the core's message in the dialect's field names; the
// rest keeps httpapi.FromStatus's status and message (403 "Unauthorized to
// access code completions", the gateway's own 429 limits, 503 before the
// model configuration arrived).
func failure(err error) *httpapi.Error {
	e := httpapi.FromStatus(err)
	if _, ok := completion.ModelFailure(err); ok {
		if e.Status == http.StatusTooManyRequests {
			return &httpapi.Error{Status: http.StatusTooManyRequests, Message: msgTooManyRequests, RetryAfter: e.RetryAfter}
		}
		return &httpapi.Error{Status: http.StatusServiceUnavailable, Message: msgInferenceFailed}
	}
	if e.Status == http.StatusBadRequest {
		e.Status = http.StatusUnprocessableEntity
		e.Message = dialectFields(e.Message)
	}
	return e
}

// dialectFields names the core's fields in the dialect's terms.
func dialectFields(msg string) string {
	for from, to := range map[string]string{"code_context": "current_file", "options.max_tokens": "max_tokens"} {
		if strings.HasPrefix(msg, from) {
			return to + msg[len(from):]
		}
	}
	return msg
}
