package rpcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"

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
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDKey); len(v) == 1 {
		return RequestID(v[0])
	}
	return RequestID("")
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
