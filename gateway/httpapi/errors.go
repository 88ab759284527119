package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/completion"
)

// Error is a refusal or failure as a dialect answers it.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Message is safe to show the caller (the verifier's and the core's
	// messages never carry secrets or raw upstream bodies).
	Message string
	// Param names the request field at fault, when known.
	Param string
	// Code is a dialect's machine-readable code, when it has one.
	Code string
	// RetryAfter, when positive, is sent as Retry-After.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// defaultRetryAfter is the Retry-After of a 429 whose cause gave none
// (the gateway's own per-user and total limits).
const defaultRetryAfter = time.Second

// FromStatus maps an error of the verifier or the completion core (a gRPC
// status error; anything else is an internal error) to its HTTP status, in
// one place for every dialect:
//
//	InvalidArgument 400, Unauthenticated 401, PermissionDenied 403,
//	NotFound 404, ResourceExhausted 429 with Retry-After (413 when the
//	request itself is too large), FailedPrecondition 502 (the model or its
//	configuration failed the gateway), Internal 500, Unavailable 503,
//	DeadlineExceeded 504, Canceled 499 (the caller went away).
func FromStatus(err error) *Error {
	st, _ := status.FromError(err)
	e := &Error{Message: st.Message()}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			e.RetryAfter = ri.GetRetryDelay().AsDuration()
		}
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange:
		e.Status = http.StatusBadRequest
	case codes.Unauthenticated:
		e.Status = http.StatusUnauthorized
	case codes.PermissionDenied:
		e.Status = http.StatusForbidden
	case codes.NotFound:
		e.Status = http.StatusNotFound
	case codes.ResourceExhausted:
		if completion.RequestTooLarge(err) {
			e.Status = http.StatusRequestEntityTooLarge
			break
		}
		e.Status = http.StatusTooManyRequests
		if e.RetryAfter <= 0 {
			e.RetryAfter = defaultRetryAfter
		}
	case codes.FailedPrecondition:
		e.Status = http.StatusBadGateway
	case codes.Unavailable:
		e.Status = http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		e.Status = http.StatusGatewayTimeout
	case codes.Canceled:
		e.Status = 499
	default:
		e.Status = http.StatusInternalServerError
		if st.Code() != codes.Internal {
			e.Message = "internal error"
		}
	}
	return e
}

// SetRetryAfter sets the Retry-After header for e, in whole seconds
// rounded up, when e carries one.
func SetRetryAfter(h http.Header, e *Error) {
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
}
