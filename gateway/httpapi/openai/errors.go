package openai

import (
	"encoding/json"
	"net/http"

	"github.com/airlock-dev/airlock/gateway/httpapi"
)

type errorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// errorType is OpenAI's error type for an HTTP status.
func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	}
	if status >= 500 {
		return "server_error"
	}
	return "invalid_request_error"
}

func errorCode(e *httpapi.Error) string {
	if e.Code != "" {
		return e.Code
	}
	switch e.Status {
	case http.StatusUnauthorized:
		return "invalid_api_key"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case http.StatusBadGateway:
		return "model_error"
	case http.StatusServiceUnavailable:
		return "model_unavailable"
	case http.StatusGatewayTimeout:
		return "model_timeout"
	}
	return ""
}

// errorEnvelope is {"error": {...}} as one SSE event (after a stream began).
func errorEnvelope(e *httpapi.Error) []byte {
	return frame(envelope(e))
}

func envelope(e *httpapi.Error) []byte {
	o := errorObject{Message: e.Message, Type: errorType(e.Status)}
	if e.Param != "" {
		o.Param = &e.Param
	}
	if c := errorCode(e); c != "" {
		o.Code = &c
	}
	b, _ := json.Marshal(struct {
		Error errorObject `json:"error"`
	}{o})
	return b
}

// writeError answers e in OpenAI's envelope, with Retry-After when e has
// one. It is the dialect's httpapi.Dialect.WriteError.
func writeError(w http.ResponseWriter, _ *http.Request, e *httpapi.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	httpapi.SetRetryAfter(h, e)
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(envelope(e), '\n'))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, nil, &httpapi.Error{Status: http.StatusInternalServerError, Message: "internal error"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
