package rpcserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testService has one method that answers, one that panics.
var testService = grpc.ServiceDesc{
	ServiceName: "test.v1.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Ok", Handler: unary("Ok", func(context.Context) error { return nil })},
		{MethodName: "Panic", Handler: unary("Panic", func(context.Context) error { panic("boom") })},
		{MethodName: "Unavailable", Handler: unary("Unavailable", func(context.Context) error {
			unavailableCalls.Add(1)
			return status.Error(codes.Unavailable, "database down")
		})},
	},
}

var unavailableCalls atomic.Int32

func unary(name string, f func(context.Context) error) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		req := new(emptypb.Empty)
		if err := dec(req); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { return new(emptypb.Empty), f(ctx) }
		if in == nil {
			return h(ctx, req)
		}
		return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/test.v1.Test/" + name}, h)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func serve(t *testing.T, o Options, dialOpts ...grpc.DialOption) (*grpc.ClientConn, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	o.Logger = zerolog.New(logs)
	srv, _ := New(o)
	srv.RegisterService(&testService, struct{}{})
	lis := bufconn.Listen(1 << 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, lis, time.Second) }()
	cc, err := grpc.NewClient("passthrough:///buf", append([]grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after shutdown, want nil", err)
		}
	})
	return cc, logs
}

func call(cc *grpc.ClientConn, method string, md ...string) (metadata.MD, error) {
	var header metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
	err := cc.Invoke(ctx, "/test.v1.Test/"+method, new(emptypb.Empty), new(emptypb.Empty), grpc.Header(&header))
	return header, err
}

func denyAll(context.Context) (context.Context, error) {
	return nil, status.Error(codes.Unauthenticated, "no")
}

func TestChain(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		method   string
		wantCode codes.Code
		wantMsg  string
		wantLog  string
	}{
		{name: "auth guards ordinary methods", opts: Options{Auth: denyAll}, method: "Ok", wantCode: codes.Unauthenticated, wantMsg: "no"},
		{name: "public methods skip auth", opts: Options{Auth: denyAll, Public: func(m string) bool { return m == "/test.v1.Test/Ok" }}, method: "Ok", wantCode: codes.OK},
		{name: "a panic becomes Internal and is logged", opts: Options{}, method: "Panic", wantCode: codes.Internal, wantMsg: "internal error", wantLog: "recovered from panic in handler"},
		{name: "every call is logged with its code", opts: Options{}, method: "Ok", wantCode: codes.OK, wantLog: `"grpc.code":"OK"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, logs := serve(t, tt.opts)
			_, err := call(cc, tt.method)
			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || (tt.wantMsg != "" && st.Message() != tt.wantMsg) {
				t.Fatalf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantLog != "" && !eventuallyContains(logs, tt.wantLog) {
				t.Fatalf("logs lack %q:\n%s", tt.wantLog, logs)
			}
		})
	}
}

func TestHealthIsPublicAndStartsNotServing(t *testing.T) {
	cc, _ := serve(t, Options{Auth: denyAll})
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health = %v, %v; want NOT_SERVING without an auth error", resp, err)
	}
}

func TestRequestID(t *testing.T) {
	cc, logs := serve(t, Options{})
	h, err := call(cc, "Ok", "x-request-id", "req-123")
	if err != nil || strings.Join(h.Get("x-request-id"), ",") != "req-123" {
		t.Fatalf("echoed id = %v, err %v", h.Get("x-request-id"), err)
	}
	if !eventuallyContains(logs, `"request_id":"req-123"`) {
		t.Fatalf("log lacks the request id:\n%s", logs)
	}
	// An id that could forge log structure is replaced, not logged.
	h, _ = call(cc, "Ok", "x-request-id", "evil\"id with spaces")
	if got := h.Get("x-request-id"); len(got) != 1 || len(got[0]) != 24 {
		t.Fatalf("generated id = %v, want 24 hex characters", got)
	}
	if strings.Contains(logs.String(), "evil") {
		t.Fatal("unsafe request id reached the log")
	}
}

// TestFailedCallStaysRetryable: a failed unary call carries its request id
// in the trailer, not a header, so a client's retry policy may retry it.
func TestFailedCallStaysRetryable(t *testing.T) {
	cc, _ := serve(t, Options{}, grpc.WithDefaultServiceConfig(`{"methodConfig":[{"name":[{"service":"test.v1.Test"}],
		"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"]}}]}`))
	unavailableCalls.Store(0)
	var trailer metadata.MD
	err := cc.Invoke(context.Background(), "/test.v1.Test/Unavailable", new(emptypb.Empty), new(emptypb.Empty), grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable || unavailableCalls.Load() != 3 {
		t.Fatalf("%v after %d attempts, want Unavailable after 3 (retried)", err, unavailableCalls.Load())
	}
	if got := trailer.Get(RequestIDKey); len(got) != 1 || len(got[0]) != 24 {
		t.Fatalf("request id in the trailer = %v, want one generated id", got)
	}
}

func eventuallyContains(b *syncBuf, s string) bool {
	for i := 0; i < 100; i++ {
		if strings.Contains(b.String(), s) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestServeHealthAnswersOnlyHealth(t *testing.T) {
	_, hs := New(Options{})
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	lis := bufconn.Listen(1 << 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHealth(ctx, lis, hs) }()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
	if _, err := call(cc, "Ok"); status.Code(err) != codes.Unimplemented {
		t.Fatalf("another service on the health port = %v, want Unimplemented", err)
	}
	cc.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeHealth = %v after shutdown", err)
	}
}

// A plaintext gRPC client at a TLS port: the handshake fails and the server
// logs, once, what the client must change.
func TestTLSCredentialsLogAPlaintextClient(t *testing.T) {
	cert, err := selfSignedForTest()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	creds := TLSCredentials(&tls.Config{Certificates: []tls.Certificate{cert}}, zerolog.New(&logs))
	for i := 0; i < 2; i++ {
		server, client := net.Pipe()
		go func() {
			_, _ = client.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
			_, _ = io.Copy(io.Discard, client)
		}()
		if _, _, err := creds.ServerHandshake(server); err == nil {
			t.Fatal("handshake with a plaintext client succeeded")
		}
		server.Close()
		client.Close()
	}
	if n := strings.Count(logs.String(), "spoke plaintext gRPC to this TLS port"); n != 1 {
		t.Fatalf("logged the hint %d times, want once (rate-limited):\n%s", n, logs.String())
	}
}

func selfSignedForTest() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func TestRefusedCallsAreLoggedSampledAndCountedExactly(t *testing.T) {
	reg := prometheus.NewRegistry()
	cc, logs := serve(t, Options{Auth: denyAll, Public: func(m string) bool { return m == "/test.v1.Test/Panic" },
		Registerer: reg, RefusalSampler: &zerolog.BurstSampler{Burst: 3, Period: time.Hour}})
	for range 50 {
		if _, err := call(cc, "Ok"); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("call: %v", err)
		}
	}
	// A failure of the service itself is never sampled away.
	if _, err := call(cc, "Panic"); status.Code(err) != codes.Internal {
		t.Fatalf("panic: %v", err)
	}
	if !eventuallyContains(logs, `"grpc.code":"Internal"`) {
		t.Fatalf("the Internal call was not logged:\n%s", logs)
	}
	if n := strings.Count(logs.String(), `"grpc.code":"Unauthenticated"`); n != 3 {
		t.Fatalf("%d refusal lines logged, want the sampler's 3", n)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var counted float64
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_code" && l.GetValue() == "Unauthenticated" {
					counted += m.GetCounter().GetValue()
				}
			}
		}
	}
	if counted != 50 {
		t.Fatalf("grpc_server_handled_total{grpc_code=Unauthenticated} = %v, want exactly 50", counted)
	}
}
