package rpcserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestFinishedCallLine pins the finished-call line: go-grpc-middleware's
// field names and levels, the handler's fields, and refused calls going
// to the sampled logger.
func TestFinishedCallLine(t *testing.T) {
	start := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 4000}})
	base = logging.InjectFields(base, logging.Fields{"request_id", "req-1"})
	common := map[string]any{"protocol": "grpc", "grpc.component": "server", "grpc.service": "airlock.gateway.v1.CompletionService",
		"grpc.method": "StreamCompletion", "grpc.method_type": "server_stream", "request_id": "req-1", "peer.address": "10.0.0.7:4000",
		"grpc.start_time": "2026-12-03T09:00:00Z", "message": "finished call"}
	with := func(extra map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	deadlined, cancel := context.WithDeadline(base, time.Date(2026, 12, 3, 9, 1, 0, 0, time.UTC))
	defer cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		fields  logging.Fields // added by the handler
		err     error
		sampled bool // written to the refusals logger
		want    map[string]any
	}{
		{name: "success, with the handler's fields", ctx: base,
			fields: logging.Fields{"user", "42", "chunks", 64, "upstream_ms", int64(12), "cached", true, "ratio", 0.5},
			want: with(map[string]any{"level": "info", "grpc.code": "OK", "user": "42", "chunks": 64.0, "upstream_ms": 12.0,
				"cached": true, "ratio": 0.5})},
		{name: "io.EOF is success", ctx: base, err: io.EOF, want: with(map[string]any{"level": "info", "grpc.code": "OK"})},
		{name: "a service failure is a warning with its error", ctx: base, err: status.Error(codes.Unavailable, "database down"),
			want: with(map[string]any{"level": "warn", "grpc.code": "Unavailable", "grpc.error": "rpc error: code = Unavailable desc = database down"})},
		{name: "an internal error is an error", ctx: base, err: errors.New("boom"),
			want: with(map[string]any{"level": "error", "grpc.code": "Unknown", "grpc.error": "boom"})},
		{name: "a refusal goes to the sampled logger", ctx: base, err: status.Error(codes.Unauthenticated, "no"), sampled: true,
			want: with(map[string]any{"level": "info", "grpc.code": "Unauthenticated", "grpc.error": "rpc error: code = Unauthenticated desc = no"})},
		{name: "the deadline is logged", ctx: deadlined,
			want: with(map[string]any{"level": "info", "grpc.code": "OK", "grpc.request.deadline": "2026-12-03T09:01:00Z"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var all, refusals bytes.Buffer
			l := &callLog{all: zerolog.New(&all), refusals: zerolog.New(&refusals)}
			ctx := logging.InjectFields(tt.ctx, nil) // the handler's own field list
			logging.AddFields(ctx, tt.fields)
			l.finished(ctx, "/airlock.gateway.v1.CompletionService/StreamCompletion", "server_stream", start, tt.err)
			out, other := &all, &refusals
			if tt.sampled {
				out, other = other, out
			}
			if other.Len() != 0 {
				t.Fatalf("written to the wrong logger: %s", other)
			}
			var got map[string]any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON line: %v: %s", err, out)
			}
			ms, ok := got["grpc.time_ms"].(string)
			if _, err := strconv.ParseFloat(ms, 32); !ok || err != nil {
				t.Errorf("grpc.time_ms = %v, want milliseconds as a string", got["grpc.time_ms"])
			}
			delete(got, "grpc.time_ms")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("line\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestFinishedCallLevelFollowsTheLoggersLevel(t *testing.T) {
	var buf bytes.Buffer
	l := &callLog{all: zerolog.New(&buf).Level(zerolog.WarnLevel), refusals: zerolog.New(&buf).Level(zerolog.WarnLevel)}
	l.finished(context.Background(), "/a.B/C", "unary", time.Now(), nil)
	if buf.Len() != 0 {
		t.Fatalf("an info line was written at warn level: %s", buf.String())
	}
	l.finished(context.Background(), "/a.B/C", "unary", time.Now(), status.Error(codes.Internal, "x"))
	if buf.Len() == 0 {
		t.Fatal("an error line was not written at warn level")
	}
}

func TestSplitMethod(t *testing.T) {
	for _, tt := range []struct{ full, service, method string }{
		{"/pkg.Service/Method", "pkg.Service", "Method"},
		{"pkg.Service/Method", "pkg.Service", "Method"},
		{"/grpc.health.v1.Health/Watch", "grpc.health.v1.Health", "Watch"},
		{"nonsense", "unknown", "unknown"},
		{"", "unknown", "unknown"},
	} {
		if s, m := splitMethod(tt.full); s != tt.service || m != tt.method {
			t.Errorf("splitMethod(%q) = %q, %q; want %q, %q", tt.full, s, m, tt.service, tt.method)
		}
	}
}

// TestStreamCallLine runs a stream through the whole chain: its line has
// the stream's type and what the handler added to its context.
func TestStreamCallLine(t *testing.T) {
	logs := &syncBuf{}
	cc := serveService(t, Options{Logger: zerolog.New(logs)}, &grpc.ServiceDesc{
		ServiceName: "test.v1.Stream", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Tokens", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			logging.AddFields(ss.Context(), logging.Fields{"chunks", 2})
			for range 2 {
				if err := ss.SendMsg(new(emptypb.Empty)); err != nil {
					return err
				}
			}
			return nil
		}}},
	})
	if n, err := readStream(cc); err != nil || n != 2 {
		t.Fatalf("read %d messages, %v", n, err)
	}
	for _, want := range []string{`"grpc.method_type":"server_stream"`, `"grpc.method":"Tokens"`, `"chunks":2`, `"grpc.code":"OK"`, `"request_id":"`} {
		if !eventuallyContains(logs, want) {
			t.Fatalf("the stream's line lacks %s:\n%s", want, logs)
		}
	}
	if n := bytes.Count([]byte(logs.String()), []byte("finished call")); n != 1 {
		t.Fatalf("%d finished-call lines, want 1:\n%s", n, logs)
	}
}
