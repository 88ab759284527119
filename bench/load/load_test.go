package load

import (
	"context"
	"net"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDirectCountsTextChunksOfTheStub(t *testing.T) {
	srv := httptest.NewServer(stubmodel.New(stubmodel.Config{Tokens: 5}))
	defer srv.Close()
	client := NewDirectClient(4)
	defer client.CloseIdleConnections()
	d := &Direct{Client: client, URL: srv.URL + "/v1/chat/completions"}
	round := Run(context.Background(), d, 2, 3)
	if len(round.Streams) != 6 {
		t.Fatalf("Run made %d streams, want 2 workers × 3", len(round.Streams))
	}
	if n, err := round.Errors(); n != 0 {
		t.Fatalf("%d streams failed: %v", n, err)
	}
	for i, s := range round.Streams {
		if s.Chunks != 5 || s.TTFT <= 0 || s.TTFT > s.Total {
			t.Fatalf("stream %d = %+v, want 5 chunks and 0 < TTFT ≤ Total", i, s)
		}
	}
	if round.ChunkRate() <= 0 {
		t.Fatal("chunk rate is not positive")
	}
}

func TestDirectReportsUpstreamErrors(t *testing.T) {
	srv := httptest.NewServer(stubmodel.New(stubmodel.Config{APIKey: "k"}))
	defer srv.Close()
	client := NewDirectClient(1)
	defer client.CloseIdleConnections()
	s := (&Direct{Client: client, URL: srv.URL + "/v1/chat/completions"}).Stream(context.Background(), 0)
	if s.Err == nil {
		t.Fatal("a 401 from upstream was not reported as an error")
	}
}

// fakeCompletion is a hand-written CompletionService that streams fixed
// texts, or fails with err, and records the authorization it saw.
type fakeCompletion struct {
	gatewayv1.UnimplementedCompletionServiceServer
	texts []string
	err   error
	auth  chan string
}

func (f *fakeCompletion) StreamCompletion(_ *gatewayv1.StreamCompletionRequest, st gatewayv1.CompletionService_StreamCompletionServer) error {
	md, _ := metadata.FromIncomingContext(st.Context())
	if v := md.Get("authorization"); len(v) == 1 {
		select {
		case f.auth <- v[0]:
		default:
		}
	}
	if f.err != nil {
		return f.err
	}
	for _, t := range f.texts {
		if err := st.Send(&gatewayv1.StreamCompletionResponse{Text: t}); err != nil {
			return err
		}
	}
	return st.Send(&gatewayv1.StreamCompletionResponse{Done: &gatewayv1.CompletionDone{Model: "m"}})
}

func bufGateway(t *testing.T, f *fakeCompletion) gatewayv1.CompletionServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	gatewayv1.RegisterCompletionServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); srv.Stop() })
	return gatewayv1.NewCompletionServiceClient(cc)
}

func TestGatewayCountsTextMessagesAndSendsTheMetadata(t *testing.T) {
	f := &fakeCompletion{texts: []string{"a", "", "b", "c"}, auth: make(chan string, 1)}
	opened := 0
	g := &Gateway{Clients: []gatewayv1.CompletionServiceClient{bufGateway(t, f)},
		MD: metadata.Pairs("authorization", "Bearer x"), Feature: "duo_chat", OnFirstChunk: func() { opened++ }}
	s := g.Stream(context.Background(), 7)
	if s.Err != nil || s.Chunks != 3 || s.TTFT <= 0 || s.TTFT > s.Total {
		t.Fatalf("stream = %+v, want 3 text chunks (the empty one skipped) and 0 < TTFT ≤ Total", s)
	}
	if opened != 1 {
		t.Fatalf("OnFirstChunk called %d times, want once", opened)
	}
	if got := <-f.auth; got != "Bearer x" {
		t.Fatalf("gateway saw authorization %q", got)
	}
}

func TestGatewayReportsStatusAndEmptyStreams(t *testing.T) {
	tests := []struct {
		name string
		f    *fakeCompletion
		code codes.Code
	}{
		{"refused", &fakeCompletion{err: status.Error(codes.Unauthenticated, "Forbidden by auth provider")}, codes.Unauthenticated},
		{"no text", &fakeCompletion{}, codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Gateway{Clients: []gatewayv1.CompletionServiceClient{bufGateway(t, tt.f)}, Feature: "duo_chat"}
			s := g.Stream(context.Background(), 0)
			if s.Err == nil || status.Code(s.Err) != tt.code {
				t.Fatalf("err = %v, want code %v", s.Err, tt.code)
			}
			if n, _ := (Round{Streams: []Stream{s}}).Errors(); n != 1 {
				t.Fatal("Round.Errors did not count the failed stream")
			}
		})
	}
}

func TestClassifySSE(t *testing.T) {
	tests := []struct {
		name string
		line string
		want SSEKind
	}{
		{"chat text", `data: {"choices":[{"delta":{"content":"Hi"}}]}` + "\n", SSEText},
		{"legacy text", `data: {"choices":[{"text":"Hi"}]}`, SSEText},
		{"role chunk with empty content", `data: {"choices":[{"delta":{"role":"assistant","content":""}}]}`, SSEOther},
		{"finish chunk", `data: {"choices":[{"delta":{},"finish_reason":"stop"}]}`, SSEOther},
		{"done", "data: [DONE]\n", SSEDone},
		{"done without space", "data:[DONE]", SSEDone},
		{"blank", "\n", SSEOther},
		{"comment", ": keep-alive\n", SSEOther},
		{"field at end of line", `data: {"content":"`, SSEOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifySSE([]byte(tt.line)); got != tt.want {
				t.Fatalf("ClassifySSE(%q) = %v, want %v", tt.line, got, tt.want)
			}
		})
	}
}

func FuzzClassifySSE(f *testing.F) {
	f.Add(`data: {"choices":[{"delta":{"content":"Hi"}}]}`)
	f.Add("data: [DONE]")
	f.Add(`data: {"content":"`)
	f.Fuzz(func(t *testing.T, line string) {
		k := ClassifySSE([]byte(line))
		if k != SSEOther && len(line) < len("data:") {
			t.Fatalf("ClassifySSE(%q) = %v for a line too short to be data", line, k)
		}
	})
}
