package completion

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// Input is one completion request in the core's terms, whatever the
// transport: the fields StreamCompletionRequest and CompleteRequest carry.
// The HTTP dialects (gateway/httpapi/...) build it from their own bodies.
type Input struct {
	Feature  string
	Messages []*gatewayv1.Message
	Code     *gatewayv1.CodeContext
	Options  *gatewayv1.GenerationOptions
	// Tools, ToolChoice and ParallelToolCalls are the request's tool
	// fields (StreamCompletionRequest's); validated by the core, and taken
	// only by models whose provider takes tools.
	Tools             []*gatewayv1.Tool
	ToolChoice        *gatewayv1.ToolChoice
	ParallelToolCalls *bool
	// Targets, when set, answer instead of the model the catalog binds to
	// Feature (authorization and limits still apply). Only a dialect that
	// has vetted a request-supplied model sets it: each target's Trusted
	// networks are the only ones its adapter may dial (gateway/egress).
	Targets []catalog.Target
}

func (in Input) internal() input {
	return input{feature: in.Feature, messages: in.Messages, code: in.Code, options: in.Options, targets: in.Targets,
		tools: in.Tools, toolChoice: in.ToolChoice, parallelToolCalls: in.ParallelToolCalls}
}

// Delta is one piece of an answer: text, then tool-call fragments, in the
// order the model produced them (adapter.Delta).
type Delta = adapter.Delta

// ToolCallDelta is a fragment of a tool call (adapter.ToolCallDelta).
type ToolCallDelta = adapter.ToolCallDelta

// Serve runs one completion as Complete does (validate, authorize against
// the identity in ctx, limit, route, retry and fail over) and calls emit
// with each delta in order (an Answer aggregates them). emit is called on the model-reading path
// with no relay in between, so it must not block on a slow caller: Serve is
// for callers that aggregate the answer. It returns the closing message, or
// a status error exactly as the gRPC methods would return it.
func (s *Service) Serve(ctx context.Context, in Input, emit func(Delta) error) (*gatewayv1.CompletionDone, error) {
	return s.serve(ctx, in.internal(), emit)
}

// ServeStream runs one completion as StreamCompletion does: deltas pass
// through the same relay, so a caller that reads slowly pauses the model
// (bounded buffer, text coalesced and fragments of one tool call merged
// while it lags) and a caller that reads
// nothing for Limits.ClientSendTimeout ends the call (ResourceExhausted).
//
// send is called from another goroutine, never concurrently with itself.
// After a nil return no send is running or will run. After an error return
// a send may still be blocked on a caller that stopped reading: the caller
// must make that write fail (a write deadline, closing the connection)
// before it writes anything else. Deltas queued before a failure are
// delivered before the error is returned. Tool-call fragments arrive only
// for an Input with Tools.
func (s *Service) ServeStream(ctx context.Context, in Input, send func(Delta) error) (*gatewayv1.CompletionDone, error) {
	r := newRelay(send, s.cfg.Limits.MaxBufferedBytes, s.cfg.Limits.ClientSendTimeout)
	done, err := s.serve(ctx, in.internal(), func(d Delta) error { return r.emit(ctx, d) })
	if ferr := r.finish(ctx); ferr != nil && err == nil {
		err = toStatus(ferr)
	}
	if err != nil {
		return nil, err
	}
	return done, nil
}

// RequestTooLarge reports whether err refuses a request for its size (too
// many messages, a prompt over Limits.MaxPromptBytes): ResourceExhausted on
// gRPC, which an HTTP dialect answers 413 rather than 429.
func RequestTooLarge(err error) bool {
	var e *sizeError
	return errors.As(err, &e)
}

// sizeError is a ResourceExhausted status that RequestTooLarge recognises.
// gRPC sees only its status (GRPCStatus), so the wire is unchanged.
type sizeError struct{ st *status.Status }

func (e *sizeError) Error() string              { return e.st.Err().Error() }
func (e *sizeError) GRPCStatus() *status.Status { return e.st }

func newSizeError(msg string) error {
	return &sizeError{st: status.New(codes.ResourceExhausted, msg)}
}
