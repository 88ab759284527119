package rpcserver

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

// streamService has a watch that never ends by itself and a stream that
// ends when finish is closed (a completion in flight).
func streamService(finish <-chan struct{}) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.v1.Streams",
		HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{
			{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.SendMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				<-ss.Context().Done()
				return status.FromContextError(ss.Context().Err()).Err()
			}},
			{StreamName: "Finite", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				if err := ss.SendMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				select {
				case <-finish:
					return nil
				case <-ss.Context().Done():
					return status.FromContextError(ss.Context().Err()).Err()
				}
			}},
		},
	}
}

func openStream(t *testing.T, cc *grpc.ClientConn, name string) grpc.ClientStream {
	t.Helper()
	s, err := cc.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, "/test.v1.Streams/"+name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(new(emptypb.Empty)); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := s.RecvMsg(new(emptypb.Empty)); err != nil {
		t.Fatalf("%s: first message: %v", name, err)
	}
	return s
}

func endOf(s grpc.ClientStream) error {
	for {
		if err := s.RecvMsg(new(emptypb.Empty)); err != nil {
			return err
		}
	}
}

func TestShutdownEndsLongLivedStreamsAtOnce(t *testing.T) {
	stopping := make(chan struct{})
	srv, _ := New(Options{Logger: zerolog.Nop(), Stopping: stopping,
		LongLived: func(m string) bool { return m == "/test.v1.Streams/Watch" }})
	finish := make(chan struct{})
	srv.RegisterService(streamService(finish), struct{}{})
	lis := bufconn.Listen(1 << 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, lis, 10*time.Second) }()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	watch := openStream(t, cc, "Watch")
	finite := openStream(t, cc, "Finite")

	begin := time.Now()
	close(stopping)
	cancel()
	if err := endOf(watch); status.Code(err) != codes.Unavailable {
		t.Fatalf("watch ended with %v, want Unavailable", err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("watch ended %v after shutdown began, want at once", took)
	}
	// A finite stream keeps its grace period: the stop waits for it.
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) while a finite stream was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(finish)
	if err := endOf(finite); !errors.Is(err, io.EOF) {
		t.Fatalf("finite stream ended with %v, want a clean end", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last call ended")
	}
}

func TestLongLivedStreamOpenedWhileStoppingIsRefused(t *testing.T) {
	stopping := make(chan struct{})
	close(stopping)
	in := drainStream(func(string) bool { return true }, stopping)
	called := false
	err := in(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x/Watch"}, func(any, grpc.ServerStream) error { called = true; return nil })
	if called || status.Code(err) != codes.Unavailable {
		t.Fatalf("handler called %v, err %v; want refused with Unavailable", called, err)
	}
}

func TestHealthWatchEndsWhenStopping(t *testing.T) {
	stopping := make(chan struct{})
	srv, hs := New(Options{Logger: zerolog.Nop(), Stopping: stopping})
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	lis := bufconn.Listen(1 << 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, lis, 10*time.Second) }()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	w, err := healthpb.NewHealthClient(cc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	close(stopping)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Fatalf("stop took %v with a health Watch open, want at once", took)
	}
}

// TestKeepaliveAgrees: a client pinging more often than the server allows
// is sent too_many_pings and loses every stream (the issuer did that to the
// gateway every ~10 min when they disagreed).
func TestKeepaliveAgrees(t *testing.T) {
	if ClientPingInterval < MinPingInterval {
		t.Fatalf("clients ping every %v, servers allow every %v at most", ClientPingInterval, MinPingInterval)
	}
}
