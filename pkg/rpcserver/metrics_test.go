package rpcserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// tokenService has one server-streaming method that sends n messages.
func tokenService(n int) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.v1.Stream",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Tokens", ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				msg := new(emptypb.Empty)
				for range n {
					if err := ss.SendMsg(msg); err != nil {
						return err
					}
				}
				return nil
			}}},
	}
}

// serveStreams runs a server with metrics on reg and the stream service.
func serveStreams(tb testing.TB, reg prometheus.Registerer, n int) *grpc.ClientConn {
	return serveService(tb, Options{Logger: zerolog.Nop(), Registerer: reg}, tokenService(n))
}

// serveService runs a server built from o with desc, over bufconn.
func serveService(tb testing.TB, o Options, desc *grpc.ServiceDesc) *grpc.ClientConn {
	srv, _ := New(o)
	srv.RegisterService(desc, struct{}{})
	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close(); srv.Stop() })
	return cc
}

// readStream calls Tokens and reads it to the end, returning the count.
func readStream(cc *grpc.ClientConn) (int, error) {
	s, err := cc.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/test.v1.Stream/Tokens")
	if err != nil {
		return 0, err
	}
	if err := s.SendMsg(new(emptypb.Empty)); err != nil {
		return 0, err
	}
	if err := s.CloseSend(); err != nil {
		return 0, err
	}
	n := 0
	for {
		if err := s.RecvMsg(new(emptypb.Empty)); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, err
		}
		n++
	}
}

func TestMetricsCountEveryMessageOfAStream(t *testing.T) {
	reg := prometheus.NewRegistry()
	cc := serveStreams(t, reg, 64)
	for range 3 {
		if n, err := readStream(cc); err != nil || n != 64 {
			t.Fatalf("read %d messages, %v", n, err)
		}
	}
	if _, err := call(cc, "Missing"); err == nil {
		t.Fatal("unknown method answered")
	}
	labels := `grpc_method="Tokens",grpc_service="test.v1.Stream",grpc_type="server_stream"`
	want := fmt.Sprintf(`
# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.
# TYPE grpc_server_handled_total counter
grpc_server_handled_total{grpc_code="OK",%[1]s} 3
# HELP grpc_server_msg_received_total Total number of RPC stream messages received on the server.
# TYPE grpc_server_msg_received_total counter
grpc_server_msg_received_total{%[1]s} 3
# HELP grpc_server_msg_sent_total Total number of gRPC stream messages sent by the server.
# TYPE grpc_server_msg_sent_total counter
grpc_server_msg_sent_total{%[1]s} 192
# HELP grpc_server_started_total Total number of RPCs started on the server.
# TYPE grpc_server_started_total counter
grpc_server_started_total{%[1]s} 3
`, labels)
	// The handled counter is added after the last message reached the
	// client; wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := testutil.GatherAndCompare(reg, strings.NewReader(want), "grpc_server_handled_total", "grpc_server_msg_received_total",
			"grpc_server_msg_sent_total", "grpc_server_started_total")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := testutil.CollectAndCount(reg, "grpc_server_handling_seconds"); n != 1 {
		t.Fatalf("%d handling-time series, want 1", n)
	}
}

// BenchmarkStream64 relays 64 messages per stream through the whole
// interceptor chain with metrics on; ns/op divided by 64 is the cost per
// message.
func BenchmarkStream64(b *testing.B) {
	cc := serveStreams(b, prometheus.NewRegistry(), 64)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := readStream(cc); err != nil || n != 64 {
			b.Fatalf("read %d messages, %v", n, err)
		}
	}
}

// BenchmarkLogFinishedCall logs one finished completion with the fields
// its handler adds.
func BenchmarkLogFinishedCall(b *testing.B) {
	l := &callLog{all: zerolog.New(io.Discard), refusals: zerolog.New(io.Discard)}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}})
	ctx = logging.InjectFields(ctx, logging.Fields{"request_id", "0123456789abcdef01234567"})
	logging.AddFields(ctx, logging.Fields{"user", "42", "jti", "9f1c2d3e", "feature", "code_suggestions",
		"model", "stub", "attempt", 1, "upstream_ms", int64(12), "upstream_ttft_ms", int64(1), "chunks", 64})
	start := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		l.finished(ctx, "/airlock.gateway.v1.CompletionService/StreamCompletion", "server_stream", start, nil)
	}
}
