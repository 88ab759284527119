package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is every error this package returns for a failed call: the gRPC
// code, the server's message, and the server's retry hint. Use errors.As to
// get it.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Message is the status message as the server (or the local gRPC
	// runtime) worded it.
	Message string
	// RetryAfter is the delay the server asked for in a RetryInfo status
	// detail (rate limits); zero when it sent none.
	RetryAfter time.Duration
	// Hint says what to do about a connection failure this client can
	// diagnose (TLS against a plaintext server or the reverse, an unknown
	// CA, a missing client certificate); empty otherwise.
	Hint string

	st    *status.Status
	cause error
}

// Error formats the error as "<Code>: <message>", for example
// "ResourceExhausted: rate limit exceeded", followed by "; hint: <Hint>"
// when there is one.
func (e *Error) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%s: %s; hint: %s", e.Code, e.Message, e.Hint)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// GRPCStatus returns the status the error was made from, with its details,
// so status.Code and status.FromError work on an *Error and gRPC passes
// the code on when the error comes from per-RPC credentials.
func (e *Error) GRPCStatus() *status.Status {
	if e.st != nil {
		return e.st
	}
	return status.New(e.Code, e.Message)
}

// Unwrap returns the local cause (such as context.Canceled) when the error
// did not come from a server.
func (e *Error) Unwrap() error { return e.cause }

// FromError converts err into an *Error: a gRPC status keeps its code,
// message and RetryInfo (and an Unavailable connection failure gets a Hint
// when its cause is recognised); a context error becomes Canceled or
// DeadlineExceeded; any other error becomes Unknown. It returns nil for nil
// and err itself when it already is an *Error. It is the single place where
// this package (and airlockctl) turns errors into codes.
func FromError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		st := status.FromContextError(err)
		return &Error{Code: st.Code(), Message: st.Message(), st: st, cause: err}
	}
	st, ok := status.FromError(err)
	if !ok {
		return &Error{Code: codes.Unknown, Message: err.Error(), cause: err}
	}
	out := &Error{Code: st.Code(), Message: st.Message(), st: st}
	if st.Code() == codes.Unavailable {
		out.Hint = transportHint(st.Message())
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if d := ri.GetRetryDelay().AsDuration(); d > 0 {
				out.RetryAfter = d
			}
		}
	}
	return out
}

// newError returns an *Error for a failure detected on the client side.
func newError(code codes.Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	return &Error{Code: code, Message: msg, st: status.New(code, msg)}
}
