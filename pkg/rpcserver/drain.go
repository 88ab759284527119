package rpcserver

import (
	"context"
	"errors"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errShuttingDown is what a long-lived stream ends with when the server
// stops: Unavailable, so the client reconnects (to another replica, or to
// this one once it is back).
var errShuttingDown = status.Error(codes.Unavailable, "server is shutting down; reconnect")

// drainStream ends the streams of long-lived methods once stopping is
// closed: their handlers see the stream context cancelled, and the call
// ends with errShuttingDown instead of Canceled. Without it a graceful stop
// would wait the whole grace period for watches that never end by
// themselves.
func drainStream(longLived func(string) bool, stopping <-chan struct{}) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if !longLived(info.FullMethod) {
			return h(srv, ss)
		}
		select {
		case <-stopping:
			return errShuttingDown
		default:
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
		w := middleware.WrapServerStream(ss)
		w.WrappedContext = ctx
		err := h(srv, w)
		select {
		case <-stopping:
			if err == nil || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return errShuttingDown
			}
		default:
		}
		return err
	}
}
