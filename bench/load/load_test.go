package load

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

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

func TestDecodeSSELine(t *testing.T) {
	tests := []struct {
		name, line, text string
		end, err         bool
	}{
		{"chat delta", `data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n", "Hi", false, false},
		{"escaped text is decoded", `data: {"choices":[{"index":0,"delta":{"content":"a\nb\u00e9"}}]}`, "a\nbé", false, false},
		{"text completion", `data:{"choices":[{"index":0,"text":"x"}]}`, "x", false, false},
		{"role-only chunk", `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`, "", false, false},
		{"usage chunk", `data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}`, "", false, false},
		{"other choice only", `data: {"choices":[{"index":1,"delta":{"content":"no"}}]}`, "", false, false},
		{"done", "data: [DONE]\r\n", "", true, false},
		{"blank and comments", ": keep-alive", "", false, false},
		{"invalid JSON", `data: {"choices":[`, "", false, true},
		{"error member", `data: {"error":{"message":"boom"}}`, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, end, err := DecodeSSELine([]byte(tt.line))
			if text != tt.text || end != tt.end || (err != nil) != tt.err {
				t.Fatalf("DecodeSSELine(%q) = %q, %v, %v; want %q, %v, error %v", tt.line, text, end, err, tt.text, tt.end, tt.err)
			}
		})
	}
}

func TestDirectSendsItsBodyAndHeader(t *testing.T) {
	got := make(chan string, 1)
	stub := stubmodel.New(stubmodel.Config{Tokens: 3})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("X-Probe")
		stub.ServeHTTP(w, r)
	}))
	defer srv.Close()
	client := NewDirectClient(1)
	defer client.CloseIdleConnections()
	body := []byte(`{"model":"m","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"x"}]}`)
	s := (&Direct{Client: client, URL: srv.URL + "/v1/chat/completions", Body: body, Header: http.Header{"X-Probe": {"1"}}}).Stream(context.Background(), 0)
	if s.Err != nil || s.Chunks != 2 {
		t.Fatalf("stream = %+v, want 2 chunks (the body's max_tokens)", s)
	}
	if h := <-got; h != "1" {
		t.Fatalf("header X-Probe = %q", h)
	}
}

func TestRunForRunsForTheDuration(t *testing.T) {
	srv := httptest.NewServer(stubmodel.New(stubmodel.Config{Tokens: 2, Delay: time.Millisecond}))
	defer srv.Close()
	client := NewDirectClient(4)
	defer client.CloseIdleConnections()
	round := RunFor(context.Background(), &Direct{Client: client, URL: srv.URL + "/v1/chat/completions"}, 3, 150*time.Millisecond)
	if n, err := round.Errors(); n != 0 || len(round.Streams) < 3 {
		t.Fatalf("%d streams, %d failed (%v); want at least one per worker", len(round.Streams), n, err)
	}
	if round.Wall < 150*time.Millisecond || round.Wall > 5*time.Second {
		t.Fatalf("round took %v, want about 150ms", round.Wall)
	}
}

// firstStarts is a Target recording when each worker began its first stream.
type firstStarts struct {
	mu    sync.Mutex
	first map[int]time.Time
}

// Stream records the worker's first start and takes 5 ms.
func (f *firstStarts) Stream(_ context.Context, worker int) Stream {
	f.mu.Lock()
	if _, ok := f.first[worker]; !ok {
		f.first[worker] = time.Now()
	}
	f.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	return Stream{}
}

func TestRunSpreadStaggersTheWorkersFirstStreams(t *testing.T) {
	const workers, spread, d = 4, 400 * time.Millisecond, 100 * time.Millisecond
	rec := &firstStarts{first: map[int]time.Time{}}
	start := time.Now()
	round := RunSpread(context.Background(), rec, workers, spread, d)
	if len(rec.first) != workers {
		t.Fatalf("%d workers streamed, want %d", len(rec.first), workers)
	}
	for w := range workers {
		// Worker w waits w × 100 ms; a late timer is fine, an early start is not.
		if at, want := rec.first[w].Sub(start), spread*time.Duration(w)/workers; at < want {
			t.Errorf("worker %d started its first stream at %v, want no sooner than %v", w, at, want)
		}
	}
	if round.Wall < spread+d {
		t.Errorf("round took %v, want at least spread + d = %v", round.Wall, spread+d)
	}
	// Every worker kept streaming until the end, the last one included.
	if len(round.Streams) < workers*(int(d/(5*time.Millisecond))/2) {
		t.Errorf("%d streams in the round, want the workers to stream through d after the spread", len(round.Streams))
	}
}

func FuzzDecodeSSELine(f *testing.F) {
	for _, l := range []string{"data: [DONE]", `data: {"choices":[{"index":0,"delta":{"content":"a"}}]}`, "data:", ": x", ""} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		text, end, err := DecodeSSELine([]byte(line))
		if !strings.HasPrefix(line, "data:") && (text != "" || end || err != nil) {
			t.Fatalf("a line without data: yielded %q, %v, %v", text, end, err)
		}
		if end && (text != "" || err != nil) {
			t.Fatalf("[DONE] with text %q or error %v", text, err)
		}
	})
}
