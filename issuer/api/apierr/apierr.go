// Package apierr converts the issuer's core errors to gRPC status errors. It
// is the one place where that happens: handlers return Status(err).
package apierr

import (
	"context"
	"errors"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/modelcheck"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/echo"
)

// Status maps err to a status error. Status errors pass through. Core
// errors get their code and a message built from their text (which never
// holds secrets), cut to echo.MaxMessage as a backstop for any value a
// core package echoed whole. Anything unrecognised is logged to log and answered with a
// bare Internal, since its text may reveal internals.
func Status(log zerolog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *modelcheck.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, echo.Message(fe.Error()))
	case errors.Is(err, minter.ErrInvalid):
		return status.Error(codes.InvalidArgument, echo.Message(err.Error()))
	case errors.Is(err, minter.ErrNotEntitled):
		return status.Error(codes.PermissionDenied, "permission denied: not entitled to any requested feature")
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, echo.Message(err.Error()))
	case errors.Is(err, store.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, echo.Message(err.Error()))
	case errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrReferenceNotFound):
		return status.Error(codes.FailedPrecondition, echo.Message(err.Error()))
	case errors.Is(err, store.ErrCycle):
		return status.Error(codes.InvalidArgument, echo.Message(err.Error()))
	case errors.Is(err, store.ErrLimitExceeded):
		return status.Error(codes.ResourceExhausted, echo.Message(err.Error()))
	case errors.Is(err, store.ErrUnavailable):
		// Fail fast while the shared database is down: the caller retries
		// (another replica, or later). The cause stays in the log.
		log.Warn().Err(err).Msg("store unavailable")
		return status.Error(codes.Unavailable, "the issuer's database is unavailable; retry later")
	case errors.Is(err, keys.ErrNoActiveKey):
		return status.Error(codes.Unavailable, "no signing key is loaded yet")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	log.Error().Err(err).Msg("internal error")
	return status.Error(codes.Internal, "internal error")
}
