package completion

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/egress"
	"github.com/airlock-dev/airlock/pkg/echo"
)

var errAnswerTooLarge = errors.New("answer exceeds the gateway's size limit; the rest was dropped")

type errUnknownProvider string

func (e errUnknownProvider) Error() string {
	return fmt.Sprintf("model provider %s is not supported by this gateway", echo.Quote(string(e)))
}

func invalid(msg string) error  { return status.Error(codes.InvalidArgument, msg) }
func tooLarge(msg string) error { return newSizeError(msg) }

// toStatus is the one place where a failure becomes a gRPC status. Messages
// never include upstream bodies verbatim or any secret: adapter.Error
// messages are scrubbed by the adapters.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var unknownProvider errUnknownProvider
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled by the caller")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request deadline exceeded")
	case errors.Is(err, catalog.ErrNotReady):
		return status.Error(codes.Unavailable, "gateway has not received the model configuration from the issuer yet")
	case errors.Is(err, catalog.ErrDisabled), errors.Is(err, catalog.ErrNoModel):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, egress.ErrForbidden):
		return status.Error(codes.FailedPrecondition, "model endpoint resolves outside the model's trusted networks")
	case errors.Is(err, errAnswerTooLarge), errors.Is(err, errClientNotReading), errors.Is(err, errTooManyToolCalls):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.As(err, &unknownProvider):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errUnexpectedToolCall):
		return status.Error(codes.Internal, err.Error())
	}
	if e, ok := adapter.AsError(err); ok {
		st, _ := status.FromError(adapterStatus(e))
		return &modelError{st: st, httpStatus: e.HTTPStatus}
	}
	return status.Error(codes.Internal, "internal error")
}

// ModelFailure reports whether err (a status error of Serve, ServeStream
// or the RPCs) was caused by the model server or by reaching it, rather
// than by the request, the caller, the gateway's limits or the model
// configuration, and the HTTP status the model server answered (0 when it
// sent none: refused connection, timeout, broken stream). Dialects that
// word such failures their own way (GitLab's "Inference failed") use it;
// gRPC sees only the status, so the wire is unchanged.
func ModelFailure(err error) (httpStatus int, ok bool) {
	var e *modelError
	if errors.As(err, &e) {
		return e.httpStatus, true
	}
	return 0, false
}

// modelError is the status of an upstream failure (see ModelFailure).
type modelError struct {
	st         *status.Status
	httpStatus int
}

func (e *modelError) Error() string              { return e.st.Err().Error() }
func (e *modelError) GRPCStatus() *status.Status { return e.st }

func adapterStatus(e *adapter.Error) error {
	switch e.Kind {
	case adapter.KindAuth:
		return status.Errorf(codes.FailedPrecondition, "model server rejected the gateway's credentials (HTTP %d): check the model's API key", e.HTTPStatus)
	case adapter.KindRateLimited:
		st := status.New(codes.ResourceExhausted, "model server is rate limiting: "+e.Message)
		if e.RetryAfter > 0 {
			if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
				st = d
			}
		}
		return st.Err()
	case adapter.KindMisconfigured:
		return status.Errorf(codes.FailedPrecondition, "model is misconfigured: the model server %s: an administrator must check the model's endpoint and identifier (airlockctl model get)", misconfiguredDetail(e))
	case adapter.KindBadRequest:
		if e.HTTPStatus == 0 {
			// The adapter could not express the request for its provider
			// (a tool call Anthropic cannot take): its message names the
			// field, so no model server is blamed.
			return status.Error(codes.InvalidArgument, echo.Message(e.Message))
		}
		return status.Errorf(codes.InvalidArgument, "model server refused the request (HTTP %d): %s", e.HTTPStatus, echo.Message(e.Message))
	case adapter.KindMalformed:
		return status.Error(codes.Internal, "model server sent a malformed stream: "+e.Message)
	case adapter.KindTimeout:
		return status.Errorf(codes.DeadlineExceeded, "model server %s timeout", timeoutName(e.Timeout))
	case adapter.KindStreamError:
		if e.Retryable {
			return status.Error(codes.Unavailable, "model server failed mid-stream: "+e.Message)
		}
		return status.Error(codes.Internal, "model server failed mid-stream: "+e.Message)
	case adapter.KindUnavailable:
		if e.RetryAfter > 0 {
			st := status.New(codes.Unavailable, "model server unavailable: "+e.Message)
			if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
				return d.Err()
			}
		}
		return status.Error(codes.Unavailable, "model server unavailable: "+e.Message)
	}
	return status.Error(codes.Internal, "model server failed")
}

// misconfiguredDetail says what the model server did, for an administrator.
func misconfiguredDetail(e *adapter.Error) string {
	switch e.HTTPStatus {
	case http.StatusNotFound:
		return "answered HTTP 404 (no such path or model): " + e.Message
	case http.StatusOK:
		return e.Message
	case 0:
		return e.Message
	}
	return fmt.Sprintf("answered HTTP %d: %s", e.HTTPStatus, e.Message)
}

func timeoutName(t string) string {
	switch t {
	case "first_byte":
		return "time-to-first-byte"
	case "":
		return "request"
	}
	return t
}

// retryable reports whether a failed attempt may be repeated (before any
// text was sent): connection failures, 5xx, connect/first-byte timeouts.
func retryable(err error) bool {
	e, ok := adapter.AsError(err)
	if !ok || errors.Is(err, egress.ErrForbidden) {
		return false
	}
	switch e.Kind {
	case adapter.KindUnavailable:
		return true
	case adapter.KindTimeout:
		return e.Timeout == "connect" || e.Timeout == "first_byte"
	case adapter.KindStreamError:
		return e.Retryable
	}
	return false
}

// failover reports whether to move on to the fallback model.
func failover(err error) bool {
	if retryable(err) || errors.Is(err, egress.ErrForbidden) {
		return true
	}
	e, ok := adapter.AsError(err)
	return ok && (e.Kind == adapter.KindRateLimited || e.Kind == adapter.KindAuth || e.Kind == adapter.KindMisconfigured)
}

// safeErr is what logs see: the status message, never a raw upstream error.
func safeErr(err error) error {
	if st, ok := status.FromError(toStatus(err)); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}
