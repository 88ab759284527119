package rpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDKey is the metadata key of a call's request id, which a caller
// may send and every response echoes. It is the module's only spelling of
// x-request-id.
const RequestIDKey = "x-request-id"

// requestID returns the caller's x-request-id if it is a sane token (at
// most 128 printable ASCII characters, so it cannot forge log structure),
// else a fresh random id.
func requestID(ctx context.Context) string {
	// ValueFromIncomingContext reads one key without copying the whole
	// metadata map, as FromIncomingContext does on every call.
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDKey); len(v) == 1 && sane(v[0]) {
		return v[0]
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func sane(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// withRequestID puts the id in the log fields.
func withRequestID(ctx context.Context) (context.Context, string) {
	id := requestID(ctx)
	return logging.InjectFields(ctx, logging.Fields{"request_id", id}), id
}

// requestIDUnary echoes the id as response header metadata of a call that
// succeeds, and as trailer metadata of one that fails: a header would make
// the failure a response with headers, which a client's gRPC retry policy
// treats as committed and never retries (an Unavailable from a replica
// whose database is unreachable must stay retryable on another replica).
func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, id := withRequestID(ctx)
	resp, err := h(ctx, req)
	md := metadata.Pairs(RequestIDKey, id)
	if err != nil {
		_ = grpc.SetTrailer(ctx, md)
	} else {
		_ = grpc.SetHeader(ctx, md)
	}
	return resp, err
}

// requestIDStream echoes the id as response header metadata.
func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	ctx, id := withRequestID(ss.Context())
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDKey, id))
	w.WrappedContext = ctx
	return h(srv, w)
}

// RequestID returns given if it is a usable request id (at most 128
// printable ASCII characters), else a fresh random id. The gateway's HTTP
// API uses it so that both transports name calls alike.
func RequestID(given string) string {
	if sane(given) {
		return given
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
