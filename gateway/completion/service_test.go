package completion

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/rs/zerolog"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/egress"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// script is what the fake adapter does on each successive call for a model.
type step struct {
	texts  []string
	deltas []adapter.Delta // emitted after texts; then finish tool_calls
	err    error
}

type fakeAdapter struct {
	mu    sync.Mutex
	steps map[string][]step // by model name
	calls map[string]int
	reqs  []*adapter.Request
}

func (f *fakeAdapter) Stream(ctx context.Context, req *adapter.Request, emit func(adapter.Delta) error) (adapter.Result, error) {
	f.mu.Lock()
	n := f.calls[req.Model.Name]
	f.calls[req.Model.Name]++
	cp := *req
	f.reqs = append(f.reqs, &cp)
	steps := f.steps[req.Model.Name]
	f.mu.Unlock()
	if n >= len(steps) {
		n = len(steps) - 1
	}
	st := steps[n]
	for _, t := range st.texts {
		if err := emit(adapter.Delta{Text: t}); err != nil {
			return adapter.Result{}, err
		}
	}
	for _, d := range st.deltas {
		if err := emit(d); err != nil {
			return adapter.Result{}, err
		}
	}
	if st.err != nil {
		return adapter.Result{}, st.err
	}
	if st.deltas != nil {
		return adapter.Result{Finish: adapter.FinishToolCalls}, nil
	}
	return adapter.Result{Finish: adapter.FinishStop, Usage: &adapter.Usage{PromptTokens: 3, CompletionTokens: len(st.texts)}}, nil
}

type fakeRouter struct{ targets []catalog.Target }

func (r fakeRouter) Route(feature.Feature) ([]catalog.Target, error) {
	if r.targets == nil {
		return nil, catalog.ErrNotReady
	}
	return r.targets, nil
}

func target(name string) catalog.Target {
	return catalog.Target{Model: adapter.Model{Name: name, Provider: "fake", APIKey: "sk-secret-" + name}, Trusted: []string{"127.0.0.1/32"}}
}

func allowAll(context.Context, feature.Feature) error { return nil }

func start(t *testing.T, cfg Config) gatewayv1.CompletionServiceClient {
	t.Helper()
	cfg.RetryBackoff = time.Millisecond
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serveInMemory(t, svc)
}

// serveInMemory serves impl over an in-memory connection until the test
// ends and returns a client of it.
func serveInMemory(t *testing.T, impl gatewayv1.CompletionServiceServer) gatewayv1.CompletionServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	gatewayv1.RegisterCompletionServiceServer(srv, impl)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return gatewayv1.NewCompletionServiceClient(cc)
}

func chat(text string) *gatewayv1.StreamCompletionRequest {
	return &gatewayv1.StreamCompletionRequest{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "user", Content: text}}}
}

// collect drains a stream into its text, closing message and final error.
func collect(t *testing.T, c gatewayv1.CompletionServiceClient, req *gatewayv1.StreamCompletionRequest) (string, *gatewayv1.CompletionDone, error) {
	t.Helper()
	st, err := c.StreamCompletion(context.Background(), req)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	var done *gatewayv1.CompletionDone
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return b.String(), done, nil
		}
		if err != nil {
			return b.String(), done, err
		}
		b.WriteString(m.GetText())
		if m.GetDone() != nil {
			done = m.GetDone()
		}
	}
}

func TestStreamsAndFailsPrecisely(t *testing.T) {
	unavailable := &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "overloaded", Retryable: true}
	tests := []struct {
		name      string
		steps     map[string][]step
		targets   []catalog.Target
		req       *gatewayv1.StreamCompletionRequest
		authz     Authorizer
		wantText  string
		wantModel string
		wantCode  codes.Code
		wantMsg   string
		wantCalls map[string]int
	}{
		{name: "relays every delta and closes with usage", steps: map[string][]step{"a": {{texts: []string{"Hel", "lo"}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantText: "Hello", wantModel: "a", wantCalls: map[string]int{"a": 1}},
		{name: "retries a 5xx before the first byte", steps: map[string][]step{"a": {{err: unavailable}, {texts: []string{"ok"}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantText: "ok", wantModel: "a", wantCalls: map[string]int{"a": 2}},
		{name: "fails over to the fallback after retries", steps: map[string][]step{"a": {{err: unavailable}}, "b": {{texts: []string{"fb"}}}},
			targets: []catalog.Target{target("a"), target("b")}, req: chat("hi"), wantText: "fb", wantModel: "b", wantCalls: map[string]int{"a": 2, "b": 1}},
		{name: "never retries after text was sent", steps: map[string][]step{"a": {{texts: []string{"par"}, err: unavailable}}, "b": {{texts: []string{"x"}}}},
			targets: []catalog.Target{target("a"), target("b")}, req: chat("hi"), wantText: "par", wantCode: codes.Unavailable, wantMsg: "model server unavailable: overloaded", wantCalls: map[string]int{"a": 1}},
		{name: "rejected api key is the operator's problem", steps: map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindAuth, HTTPStatus: 401, Message: "bad key"}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantCode: codes.FailedPrecondition, wantMsg: "model server rejected the gateway's credentials (HTTP 401): check the model's API key", wantCalls: map[string]int{"a": 1}},
		{name: "a model server's 404 is the administrator's problem, and the fallback is tried",
			steps:   map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 404, Message: "Not Found"}}}, "b": {{err: &adapter.Error{Kind: adapter.KindMisconfigured, HTTPStatus: 404, Message: "Not Found"}}}},
			targets: []catalog.Target{target("a"), target("b")}, req: chat("hi"), wantCode: codes.FailedPrecondition,
			wantMsg:   "model is misconfigured: the model server answered HTTP 404 (no such path or model): Not Found: an administrator must check the model's endpoint and identifier (airlockctl model get)",
			wantCalls: map[string]int{"a": 1, "b": 1}},
		{name: "malformed stream is internal", steps: map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindMalformed, Message: "stream ended without [DONE]"}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantCode: codes.Internal, wantMsg: "model server sent a malformed stream: stream ended without [DONE]"},
		{name: "idle timeout names itself", steps: map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindTimeout, Timeout: "idle"}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantCode: codes.DeadlineExceeded, wantMsg: "model server idle timeout", wantCalls: map[string]int{"a": 1}},
		{name: "egress guard refusal is not retried", steps: map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindUnavailable, Message: "dial", Err: egress.ErrForbidden}}}},
			targets: []catalog.Target{target("a")}, req: chat("hi"), wantCode: codes.FailedPrecondition, wantMsg: "model endpoint resolves outside the model's trusted networks", wantCalls: map[string]int{"a": 1}},
		{name: "no configuration yet", req: chat("hi"), wantCode: codes.Unavailable, wantMsg: "gateway has not received the model configuration from the issuer yet"},
		{name: "unknown feature", req: &gatewayv1.StreamCompletionRequest{Feature: "chat"}, wantCode: codes.InvalidArgument,
			wantMsg: `unknown feature "chat": want one of code_completions, code_generations, duo_chat`},
		{name: "chat needs messages", targets: []catalog.Target{target("a")}, req: &gatewayv1.StreamCompletionRequest{Feature: "duo_chat"}, wantCode: codes.InvalidArgument,
			wantMsg: "messages: duo_chat needs at least one message"},
		{name: "bad role", targets: []catalog.Target{target("a")}, req: &gatewayv1.StreamCompletionRequest{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "root", Content: "x"}}},
			wantCode: codes.InvalidArgument, wantMsg: `messages[0].role: "root" is not one of system, user, assistant, tool`},
		{name: "temperature out of range", targets: []catalog.Target{target("a")},
			req:      &gatewayv1.StreamCompletionRequest{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "user", Content: "x"}}, Options: &gatewayv1.GenerationOptions{Temperature: ptr(float32(3))}},
			wantCode: codes.InvalidArgument, wantMsg: "options.temperature: 3 is outside [0, 2]"},
		{name: "permission denied comes from the authorizer", targets: []catalog.Target{target("a")}, req: chat("hi"),
			authz: func(context.Context, feature.Feature) error {
				return status.Error(codes.PermissionDenied, "Unauthorized to access duo chat")
			},
			wantCode: codes.PermissionDenied, wantMsg: "Unauthorized to access duo chat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAdapter{steps: tt.steps, calls: map[string]int{}}
			authz := tt.authz
			if authz == nil {
				authz = allowAll
			}
			c := start(t, Config{Router: fakeRouter{tt.targets}, Authorize: authz,
				Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
			text, done, err := collect(t, c, tt.req)
			if text != tt.wantText {
				t.Errorf("text = %q, want %q", text, tt.wantText)
			}
			if tt.wantCode != codes.OK {
				st, _ := status.FromError(err)
				if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
					t.Fatalf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
				if strings.Contains(st.Message(), "sk-secret") {
					t.Fatal("API key leaked into the status")
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if done.GetModel() != tt.wantModel || done.GetFinishReason() != gatewayv1.FinishReason_FINISH_REASON_STOP || done.GetUsage().GetPromptTokens() != 3 {
					t.Fatalf("done = %v", done)
				}
			}
			for m, n := range tt.wantCalls {
				if fa.calls[m] != n {
					t.Errorf("calls[%s] = %d, want %d", m, fa.calls[m], n)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRateLimitCarriesRetryInfo(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{err: &adapter.Error{Kind: adapter.KindRateLimited, HTTPStatus: 429, Message: "slow down", RetryAfter: 1500 * time.Millisecond}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a")}}, Authorize: allowAll,
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	_, _, err := collect(t, c, chat("hi"))
	st, _ := status.FromError(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("code = %v", st.Code())
	}
	var got time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			got = ri.GetRetryDelay().AsDuration()
		}
	}
	if got != 1500*time.Millisecond {
		t.Fatalf("RetryInfo delay = %v, want 1.5s", got)
	}
}

func TestCompleteAggregates(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"a", "b", "c"}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a")}}, Authorize: allowAll,
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	resp, err := c.Complete(context.Background(), &gatewayv1.CompleteRequest{Feature: "code_completions",
		CodeContext: &gatewayv1.CodeContext{FileName: "main.go", ContentAboveCursor: "func main() {", Language: "go"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetText() != "abc" || resp.GetDone().GetUsage().GetCompletionTokens() != 3 {
		t.Fatalf("resp = %v", resp)
	}
	if r := fa.reqs[0]; r.Code == nil || r.Code.Above != "func main() {" || r.Feature != feature.CodeCompletions || r.MaxTokens != 1024 {
		t.Fatalf("adapter request = %+v", r)
	}
}

func TestPerUserConcurrencyLimit(t *testing.T) {
	lm := newLimiter(Limits{UserConcurrentStreams: 1}.withDefaults())
	rel, err := lm.acquire("u1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.acquire("u1"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want ResourceExhausted", err)
	}
	if r2, err := lm.acquire("u2"); err != nil {
		t.Fatalf("other user blocked: %v", err)
	} else {
		r2()
	}
	rel()
	rel() // idempotent
	if r3, err := lm.acquire("u1"); err != nil {
		t.Fatalf("after release: %v", err)
	} else {
		r3()
	}
}

func TestAnswerSizeIsBoundedWhileStreaming(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"12345", "67890", "never"}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a")}}, Authorize: allowAll, Limits: Limits{MaxAnswerBytes: 8},
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	text, _, err := collect(t, c, chat("hi"))
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || text != "12345" {
		t.Fatalf("text %q, err %v; want the first delta then ResourceExhausted", text, err)
	}
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter time.Duration
		wantCalls  map[string]int
		minElapsed time.Duration
	}{
		{"short hint is waited out, then the same model is retried", 300 * time.Millisecond, map[string]int{"a": 2, "b": 0}, 300 * time.Millisecond},
		{"long hint fails over at once", time.Minute, map[string]int{"a": 1, "b": 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy := &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "busy", Retryable: true, RetryAfter: tt.retryAfter}
			fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{err: busy}, {texts: []string{"a"}}}, "b": {{texts: []string{"b"}}}}}
			c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a"), target("b")}}, Authorize: allowAll,
				Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
			begin := time.Now()
			if _, _, err := collect(t, c, chat("hi")); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(begin); el < tt.minElapsed || el > tt.minElapsed+2*time.Second {
				t.Fatalf("took %v, want at least %v", el, tt.minElapsed)
			}
			for m, n := range tt.wantCalls {
				if fa.calls[m] != n {
					t.Errorf("calls[%s] = %d, want %d", m, fa.calls[m], n)
				}
			}
		})
	}
}

// stallingAdapter waits, like a model server that never sends headers, until
// the call's first-byte deadline and reports the first-byte timeout.
type stallingAdapter struct {
	mu    sync.Mutex
	calls int
}

func (a *stallingAdapter) Stream(ctx context.Context, _ *adapter.Request, _ func(adapter.Delta) error) (adapter.Result, error) {
	a.mu.Lock()
	a.calls++
	a.mu.Unlock()
	dl, ok := adapter.FirstByteDeadline(ctx)
	if !ok {
		return adapter.Result{}, errors.New("no first-byte deadline in the context")
	}
	select {
	case <-time.After(time.Until(dl)):
	case <-ctx.Done():
		return adapter.Result{}, ctx.Err()
	}
	return adapter.Result{}, &adapter.Error{Kind: adapter.KindTimeout, Timeout: "first_byte", Retryable: true}
}

// A first-byte timeout is transient (retried, failed over), but the caller
// waits for it once: retries and the fallback share one budget.
func TestFirstByteBudgetCoversRetriesAndFallbacks(t *testing.T) {
	const budget = 300 * time.Millisecond
	sa := &stallingAdapter{}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a"), target("b")}}, Authorize: allowAll,
		Timeouts: adapter.Timeouts{FirstByte: budget},
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return sa, nil }}})
	begin := time.Now()
	_, _, err := collect(t, c, chat("hi"))
	took := time.Since(begin)
	if st, _ := status.FromError(err); st.Code() != codes.DeadlineExceeded || st.Message() != "model server time-to-first-byte timeout" {
		t.Fatalf("err = %v, want DeadlineExceeded time-to-first-byte", err)
	}
	if took < budget || took > budget+budget/2 {
		t.Fatalf("caller waited %v, want one budget of %v (not one per attempt)", took, budget)
	}
	if sa.calls != 1 {
		t.Fatalf("%d attempts, want 1: nothing is tried once the budget is spent", sa.calls)
	}
}

// A fast failure leaves budget for the retry and the fallback.
func TestFirstByteBudgetLeavesFastFailuresTheirRetries(t *testing.T) {
	unavailable := &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "down", Retryable: true}
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{err: unavailable}}, "b": {{texts: []string{"fb"}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a"), target("b")}}, Authorize: allowAll,
		Timeouts: adapter.Timeouts{FirstByte: 5 * time.Second},
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	if text, _, err := collect(t, c, chat("hi")); err != nil || text != "fb" {
		t.Fatalf("text %q err %v, want the fallback's answer", text, err)
	}
	if fa.calls["a"] != 2 || fa.calls["b"] != 1 {
		t.Fatalf("calls = %v, want a twice, then b", fa.calls)
	}
}

func TestInvalidRequestsCountTowardTheUserRate(t *testing.T) {
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"ok"}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a")}}, Authorize: allowAll,
		Caller:   func(context.Context) (string, string) { return "u1", "jti" },
		Limits:   Limits{UserRequestsPerMinute: 3},
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	for i, feat := range []string{"no_such_feature", "", "duo_chat\x00"} {
		if _, err := c.Complete(context.Background(), &gatewayv1.CompleteRequest{Feature: feat}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("invalid call %d: %v, want InvalidArgument", i, err)
		}
	}
	// The three invalid calls spent the user's burst of three.
	_, err := c.Complete(context.Background(), &gatewayv1.CompleteRequest{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "user", Content: "hi"}}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("valid call after three invalid ones: %v, want ResourceExhausted", err)
	}
	if len(fa.reqs) != 0 {
		t.Fatalf("the model was called %d times", len(fa.reqs))
	}
}

// TestOversizedFieldsAreRefusedShortOnBothRPCs sends an oversized value in
// each field of both RPCs: each is refused naming the field, with a short
// message, before the model is called, and the service logs nothing large.
func TestOversizedFieldsAreRefusedShortOnBothRPCs(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	msgs := func(ms ...*gatewayv1.Message) []*gatewayv1.Message { return ms }
	hi := &gatewayv1.Message{Role: "user", Content: "hi"}
	many := make([]*gatewayv1.Message, 100_000)
	for i := range many {
		many[i] = hi
	}
	stops := make([]string, 100_000)
	for i := range stops {
		stops[i] = "x"
	}
	tests := []struct {
		name     string
		feature  string
		messages []*gatewayv1.Message
		code     *gatewayv1.CodeContext
		options  *gatewayv1.GenerationOptions
		wantCode codes.Code
		wantMsg  string // prefix
	}{
		{"1 MiB feature", big, msgs(hi), nil, nil, codes.InvalidArgument, "feature: 1048576 bytes, limit 64"},
		{"1 MiB role", "duo_chat", msgs(&gatewayv1.Message{Role: big, Content: "x"}), nil, nil, codes.InvalidArgument, "messages[0].role: 1048576 bytes, limit 16"},
		{"1 MiB file name", "code_completions", nil, &gatewayv1.CodeContext{FileName: big, ContentAboveCursor: "x"}, nil, codes.InvalidArgument, "code_context.file_name: 1048576 bytes, limit 1024"},
		{"1 MiB language", "code_completions", nil, &gatewayv1.CodeContext{Language: big, ContentAboveCursor: "x"}, nil, codes.InvalidArgument, "code_context.language: 1048576 bytes, limit 64"},
		{"2 MiB of content", "duo_chat", msgs(&gatewayv1.Message{Role: "user", Content: big}, &gatewayv1.Message{Role: "user", Content: big}), nil, nil, codes.ResourceExhausted, "prompt too large"},
		{"100,000 messages", "duo_chat", many, nil, nil, codes.ResourceExhausted, "too many messages"},
		{"1 MiB stop sequence", "duo_chat", msgs(hi), nil, &gatewayv1.GenerationOptions{Stop: []string{big}}, codes.InvalidArgument, "options.stop[0]: must be 1-256 bytes"},
		{"100,000 stop sequences", "duo_chat", msgs(hi), nil, &gatewayv1.GenerationOptions{Stop: stops}, codes.InvalidArgument, "options.stop: 100000 sequences, limit 4"},
	}
	logs := &strings.Builder{}
	var mu sync.Mutex
	fa := &fakeAdapter{calls: map[string]int{}, steps: map[string][]step{"a": {{texts: []string{"ok"}}}}}
	c := start(t, Config{Router: fakeRouter{[]catalog.Target{target("a")}}, Authorize: allowAll,
		Logger:   zerolog.New(lockedWriter{&mu, logs}),
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(rpc string, err error) {
				st := status.Convert(err)
				if st.Code() != tt.wantCode || !strings.HasPrefix(st.Message(), tt.wantMsg) || len(st.Message()) > 256 {
					t.Fatalf("%s: status = %v %.200q (%d bytes), want %v %q…, at most 256 bytes", rpc, st.Code(), st.Message(), len(st.Message()), tt.wantCode, tt.wantMsg)
				}
			}
			_, _, err := collect(t, c, &gatewayv1.StreamCompletionRequest{Feature: tt.feature, Messages: tt.messages, CodeContext: tt.code, Options: tt.options})
			check("StreamCompletion", err)
			_, err = c.Complete(context.Background(), &gatewayv1.CompleteRequest{Feature: tt.feature, Messages: tt.messages, CodeContext: tt.code, Options: tt.options})
			check("Complete", err)
		})
	}
	if len(fa.reqs) != 0 {
		t.Fatalf("the model was called %d times", len(fa.reqs))
	}
	mu.Lock()
	defer mu.Unlock()
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 2048 {
			t.Fatalf("a log line of %d bytes", len(line))
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// The call's log line gets its fields once, from the last attempt: a retry
// shows attempt 2, and every field is present once.
func TestServeLogFieldsOnceFromTheLastAttempt(t *testing.T) {
	fa := &fakeAdapter{steps: map[string][]step{"m": {
		{err: &adapter.Error{Kind: adapter.KindUnavailable, Retryable: true, Message: "down"}},
		{texts: []string{"a", "b"}},
	}}, calls: map[string]int{}}
	svc, err := New(Config{Router: fakeRouter{targets: []catalog.Target{target("m")}}, Authorize: allowAll,
		Adapters:     map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }},
		Caller:       func(context.Context) (string, string) { return "alice", "jti-1" },
		RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := logging.InjectFields(context.Background(), logging.Fields{"request_id", "r1"})
	if _, err := svc.Serve(ctx, Input{Feature: "duo_chat", Messages: chat("hi").GetMessages()}, func(adapter.Delta) error { return nil }); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	count := map[string]int{}
	for i := logging.ExtractFields(ctx).Iterator(); i.Next(); {
		k, v := i.At()
		got[k] = v
		count[k]++
	}
	want := map[string]any{"request_id": "r1", "user": "alice", "jti": "jti-1", "feature": "duo_chat", "model": "m",
		"attempt": 2, "chunks": 2}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("log field %s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"upstream_ms", "upstream_ttft_ms"} {
		if _, ok := got[k]; !ok {
			t.Errorf("log field %s missing", k)
		}
	}
	for k, n := range count {
		if n != 1 {
			t.Errorf("log field %s appears %d times", k, n)
		}
	}
}

// quotaServer sends n bytes of text in 100-byte messages, then reports.
type quotaServer struct {
	gatewayv1.UnimplementedCompletionServiceServer
	n    int
	sent chan struct{}
}

func (q *quotaServer) StreamCompletion(_ *gatewayv1.StreamCompletionRequest, st gatewayv1.CompletionService_StreamCompletionServer) error {
	text := strings.Repeat("x", 100-perMessageOverhead)
	for sent := 0; sent+100 <= q.n; sent += 100 {
		if err := st.Send(&gatewayv1.StreamCompletionResponse{Text: text}); err != nil {
			return err
		}
	}
	close(q.sent)
	<-st.Context().Done()
	return nil
}

// The premise of inlineSendBytes, checked against the grpc-go in go.mod:
// a stream's sends totalling the inline budget complete although the
// caller reads nothing, so an inline send cannot block a stream.
func TestGRPCSendsWithinTheInlineBudgetDoNotBlock(t *testing.T) {
	q := &quotaServer{n: inlineSendBytes, sent: make(chan struct{})}
	client := serveInMemory(t, q)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := client.StreamCompletion(ctx, chat("hi")); err != nil {
		t.Fatal(err)
	} // and never Recv
	select {
	case <-q.sent:
	case <-time.After(5 * time.Second):
		t.Fatalf("sends of %d bytes blocked on a caller that reads nothing", inlineSendBytes)
	}
}
