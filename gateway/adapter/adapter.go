// Package adapter defines how the gateway talks to a model server: one
// Adapter interface that every provider family implements (OpenAI-compatible,
// Ollama native, Anthropic, Azure OpenAI), the normalized request and result
// types, and the upstream error that the completion service maps to a gRPC
// status in one place.
package adapter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/airlock-dev/airlock/pkg/feature"
)

// Adapter streams one completion from a model server.
//
// Stream sends the request, calls emit with each non-empty Delta in order
// as it arrives (never buffering the whole answer; the deltas decoded from
// one read of the response may be joined into one, handed on before the
// adapter waits on the server again), and returns the
// normalized finish reason and usage when the stream ends cleanly. If emit
// returns an error, Stream stops at once, closes the upstream request and
// returns that error. Failures are returned as *Error (see Kind); the
// deltas already passed to emit stay delivered. Stream must close the
// upstream HTTP request promptly when ctx is cancelled.
//
// An adapter whose provider cannot take tools (see ToolTaker) never emits
// tool-call deltas.
type Adapter interface {
	Stream(ctx context.Context, req *Request, emit func(Delta) error) (Result, error)
}

// ToolTaker is implemented by adapters that can pass Request.Tools,
// ToolChoice and tool messages to their model server and report the tool
// calls it answers. The completion service routes a request that carries
// tools only to models whose adapter implements it and returns true; an
// adapter that does not is never given one.
type ToolTaker interface {
	TakesTools() bool
}

// Delta is one piece of an answer: Text first, then ToolCalls, in the order
// the model produced them. The text-only case (ToolCalls nil) is passed by
// value without allocating.
type Delta struct {
	Text      string
	ToolCalls []ToolCallDelta
}

// Empty reports whether d carries nothing.
func (d Delta) Empty() bool { return d.Text == "" && len(d.ToolCalls) == 0 }

// ToolCallDelta is a fragment of one tool call. Index identifies the call
// within the answer (0, 1, ...); ID and Name arrive on its first fragment,
// Arguments (a JSON text) arrives in fragments to be concatenated in order.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// Tool is a function the model may call.
type Tool struct {
	Name        string
	Description string
	Parameters  string // a JSON Schema object, as JSON text; "" for none
}

// Tool choice modes (ToolChoice.Mode).
const (
	ToolChoiceNone     = "none"
	ToolChoiceAuto     = "auto"
	ToolChoiceRequired = "required"
	ToolChoiceFunction = "function" // ToolChoice.Name must be called
)

// ToolChoice says whether and which tool the model must call.
type ToolChoice struct {
	Mode string // one of the ToolChoice* modes
	Name string // the function to call when Mode is ToolChoiceFunction
}

// ToolCall is a call the model made earlier in the conversation (on an
// assistant Message).
type ToolCall struct {
	ID        string
	Name      string
	Arguments string // JSON text, as the model produced it
}

// Model is the configured model an adapter talks to.
type Model struct {
	Name       string // configured name (for logs and results)
	Family     string // a pkg/model family name (model.Families)
	Provider   string // a pkg/model provider name (model.Providers)
	Endpoint   string // base URL (vLLM: ends in /v1)
	Identifier string // model name at the server (Azure: deployment)
	APIKey     string // secret: attach to requests, never log or echo
	APIVersion string // Azure api-version
}

// Message is one chat turn.
type Message struct {
	Role    string // system, user, assistant, tool
	Content string
	// ToolCalls are the calls an assistant turn made.
	ToolCalls []ToolCall
	// ToolCallID names the call a tool turn answers.
	ToolCallID string
}

// CodeContext is the editor state for code features.
type CodeContext struct {
	FileName string
	Above    string // content above the cursor
	Below    string // content below the cursor
	Language string
}

// Request is a normalized completion request.
type Request struct {
	Model       Model
	Feature     feature.Feature
	Messages    []Message
	Code        *CodeContext // set for code features when the caller sent one
	MaxTokens   int          // 0: adapter default
	Temperature *float32
	TopP        *float32
	Stop        []string
	// Tools, ToolChoice and ParallelToolCalls are set only for an adapter
	// that implements ToolTaker. ToolChoice and ParallelToolCalls are nil
	// when the caller left them to the model server's default.
	Tools             []Tool
	ToolChoice        *ToolChoice
	ParallelToolCalls *bool
}

// HasToolFields reports whether r carries tools or a tool turn (an
// assistant turn with calls, a tool result): only a ToolTaker can take it.
func (r *Request) HasToolFields() bool {
	if len(r.Tools) > 0 || r.ToolChoice != nil || r.ParallelToolCalls != nil {
		return true
	}
	for _, m := range r.Messages {
		if len(m.ToolCalls) > 0 || m.ToolCallID != "" || m.Role == "tool" {
			return true
		}
	}
	return false
}

// Finish is a normalized finish reason.
type Finish string

// Normalized finish reasons (the shared wire fixtures' vocabulary).
const (
	FinishStop          Finish = "stop"
	FinishLength        Finish = "length"
	FinishToolCalls     Finish = "tool_calls"
	FinishContentFilter Finish = "content_filter"
)

// Usage is token usage as the server reported it.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
}

// Result is what a cleanly ended stream reports.
type Result struct {
	Finish    Finish
	RawFinish string // provider's own value (end_turn, eos_token, ...)
	Usage     *Usage // nil when the stream carried no final usage
}

// Kind classifies an upstream failure; the completion service maps each kind
// to one gRPC code.
type Kind int

// Failure kinds.
const (
	KindUnavailable Kind = iota + 1 // connection refused/reset, 5xx, overloaded → Unavailable
	KindAuth                        // 401/403: operator's API key rejected → FailedPrecondition
	KindRateLimited                 // 429 → ResourceExhausted with RetryAfter
	KindBadRequest                  // other 4xx: the server refused our request → InvalidArgument
	KindMalformed                   // unparsable or truncated stream → Internal
	KindStreamError                 // the server reported an error inside a 200 stream → Unavailable or Internal by Retryable
	KindTimeout                     // a configured timeout fired → DeadlineExceeded
	// KindMisconfigured: the model's configuration is wrong, not the
	// caller's request: 404/405 (wrong endpoint path or unknown model
	// identifier), or a 200 that is not a stream (an HTML page of a proxy
	// in front of the endpoint) → FailedPrecondition, worded for the
	// administrator.
	KindMisconfigured
)

// Error is an upstream failure. Message is safe to show a caller: it never
// contains the API key or a raw upstream body.
type Error struct {
	Kind       Kind
	HTTPStatus int           // 0 when no HTTP response was received
	Type       string        // upstream error type (rate_limit_error, tokens, overloaded_error, ...)
	Code       string        // upstream error code, if any
	Message    string        // short description, secrets removed
	Retryable  bool          // 429, 5xx, overloaded, connection errors
	RetryAfter time.Duration // from retry-after-ms / retry-after; 0 if none
	Timeout    string        // for KindTimeout: connect, first_byte, idle, total
	Err        error         // underlying cause, for errors.Is/As (never shown to callers)
}

func (e *Error) Error() string {
	if e.HTTPStatus != 0 {
		return fmt.Sprintf("upstream %d: %s", e.HTTPStatus, e.Message)
	}
	return "upstream: " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// AsError returns err as *Error if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Timeouts bound each phase of an upstream call; zero disables that bound.
type Timeouts struct {
	Connect time.Duration // TCP (and TLS) connect
	// FirstByte bounds request sent → response headers. The completion
	// service also makes it one budget for the whole call, across retries
	// and the fallback (WithFirstByteDeadline).
	FirstByte time.Duration
	Idle      time.Duration // between two reads of the body
	Total     time.Duration // whole call
}

type firstByteKey struct{}

// WithFirstByteDeadline returns ctx carrying the time by which a model
// server's response headers must have arrived, whatever the attempt: every
// adapter's first-byte timer fires at the earlier of its own FirstByte
// timeout and this deadline, so retries and fallbacks share one budget.
func WithFirstByteDeadline(ctx context.Context, deadline time.Time) context.Context {
	return context.WithValue(ctx, firstByteKey{}, deadline)
}

// FirstByteDeadline returns the deadline set by WithFirstByteDeadline.
func FirstByteDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(firstByteKey{}).(time.Time)
	return t, ok
}

// Config is what a constructor gets.
type Config struct {
	// Transport sends requests; nil means http.DefaultTransport (tests and
	// tools only). The gateway passes one that dials only the model's
	// trusted networks. Redirects are never followed: a model server's 3xx
	// is a configuration error, so a request and its API key go to the
	// configured endpoint and nowhere else. Timeouts governs the call.
	Transport http.RoundTripper
	Timeouts  Timeouts
	// MaxEventBytes bounds one SSE event or NDJSON line (default 1 MiB);
	// MaxBodyBytes bounds the whole response body (default 64 MiB).
	MaxEventBytes int
	MaxBodyBytes  int64
}

// Constructor builds an adapter for a provider.
type Constructor func(Config) (Adapter, error)
