package completion

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func newEntryService(t *testing.T, fa *fakeAdapter, lim Limits) *Service {
	t.Helper()
	svc, err := New(Config{Router: fakeRouter{targets: []catalog.Target{target("m")}}, Authorize: allowAll, Limits: lim,
		Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func chatInput(text string) Input {
	return Input{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "user", Content: text}}}
}

// The HTTP entry points run the same core as the gRPC methods.
func TestEntryPointsServeLikeTheRPCs(t *testing.T) {
	fa := &fakeAdapter{steps: map[string][]step{"m": {{texts: []string{"a", "b", "c"}}}}, calls: map[string]int{}}
	svc := newEntryService(t, fa, Limits{})
	var agg strings.Builder
	done, err := svc.Serve(context.Background(), chatInput("hi"), func(d Delta) error { agg.WriteString(d.Text); return nil })
	if err != nil || agg.String() != "abc" || done.GetModel() != "m" || done.GetUsage().GetCompletionTokens() != 3 {
		t.Fatalf("Serve = %q, %v, %v", agg.String(), done, err)
	}
	var streamed strings.Builder
	done, err = svc.ServeStream(context.Background(), chatInput("hi"), func(d Delta) error { streamed.WriteString(d.Text); return nil })
	if err != nil || streamed.String() != "abc" || done.GetFinishReason() != gatewayv1.FinishReason_FINISH_REASON_STOP {
		t.Fatalf("ServeStream = %q, %v, %v", streamed.String(), done, err)
	}
}

func TestRequestTooLargeTellsSizeFromRateLimits(t *testing.T) {
	fa := &fakeAdapter{steps: map[string][]step{"m": {{texts: []string{"a"}}}}, calls: map[string]int{}}
	svc := newEntryService(t, fa, Limits{MaxPromptBytes: 4})
	_, err := svc.Serve(context.Background(), chatInput("longer than four"), func(Delta) error { return nil })
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.HasPrefix(st.Message(), "prompt too large") {
		t.Fatalf("err = %v, want ResourceExhausted prompt too large", err)
	}
	if !RequestTooLarge(err) {
		t.Errorf("RequestTooLarge(%v) = false", err)
	}
	if RequestTooLarge(status.Error(codes.ResourceExhausted, "request rate limit exceeded")) {
		t.Errorf("a rate limit reads as a request too large")
	}
}

// A caller that stops reading ends ServeStream within ClientSendTimeout,
// as it ends a gRPC stream.
func TestServeStreamEndsWhenTheCallerStopsReading(t *testing.T) {
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = strings.Repeat("x", 1024)
	}
	fa := &fakeAdapter{steps: map[string][]step{"m": {{texts: texts}}}, calls: map[string]int{}}
	svc := newEntryService(t, fa, Limits{MaxBufferedBytes: 2048, ClientSendTimeout: 50 * time.Millisecond})
	block := make(chan struct{})
	defer close(block)
	start := time.Now()
	_, err := svc.ServeStream(context.Background(), chatInput("hi"), func(Delta) error { <-block; return nil })
	if status.Code(err) != codes.ResourceExhausted || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v, want ResourceExhausted soon after 50ms", err, time.Since(start))
	}
}

// Targets set by a dialect answer instead of the catalog's binding, and
// authorization still applies.
func TestInputTargetsReplaceTheCatalogBinding(t *testing.T) {
	fa := &fakeAdapter{steps: map[string][]step{"m": {{texts: []string{"catalog"}}}, "req": {{texts: []string{"request"}}}}, calls: map[string]int{}}
	svc := newEntryService(t, fa, Limits{})
	in := chatInput("hi")
	in.Targets = []catalog.Target{target("req")}
	var got strings.Builder
	done, err := svc.Serve(context.Background(), in, func(d Delta) error { got.WriteString(d.Text); return nil })
	if err != nil || got.String() != "request" || done.GetModel() != "req" || fa.calls["m"] != 0 {
		t.Fatalf("Serve = %q, %v, %v (catalog model calls %d)", got.String(), done, err, fa.calls["m"])
	}
	deny, err := New(Config{Router: fakeRouter{}, Authorize: func(context.Context, feature.Feature) error {
		return status.Error(codes.PermissionDenied, "no")
	}, Adapters: map[string]adapter.Constructor{"fake": func(adapter.Config) (adapter.Adapter, error) { return fa, nil }}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deny.Serve(context.Background(), in, func(Delta) error { return nil }); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied", err)
	}
}

// ModelFailure tells the model server's failures from the request's and
// the gateway's, keeping the status and its RetryInfo.
func TestModelFailureNamesUpstreamCauses(t *testing.T) {
	rateLimited := &adapter.Error{Kind: adapter.KindRateLimited, HTTPStatus: 429, Message: "slow down", RetryAfter: time.Second}
	tests := []struct {
		name     string
		err      error
		in       Input
		wantCode codes.Code
		wantHTTP int
		model    bool
	}{
		{name: "rate limited", err: rateLimited, in: chatInput("hi"), wantCode: codes.ResourceExhausted, wantHTTP: 429, model: true},
		{name: "server error", err: &adapter.Error{Kind: adapter.KindUnavailable, HTTPStatus: 503, Message: "down"}, in: chatInput("hi"), wantCode: codes.Unavailable, wantHTTP: 503, model: true},
		{name: "model refused the request", err: &adapter.Error{Kind: adapter.KindBadRequest, HTTPStatus: 400, Message: "bad"}, in: chatInput("hi"), wantCode: codes.InvalidArgument, wantHTTP: 400, model: true},
		{name: "the request itself", in: Input{Feature: "duo_chat"}, wantCode: codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := &fakeAdapter{steps: map[string][]step{"m": {{err: tt.err}}}, calls: map[string]int{}}
			svc := newEntryService(t, fa, Limits{})
			svc.cfg.Attempts = 1
			_, err := svc.Serve(context.Background(), tt.in, func(Delta) error { return nil })
			code, ok := ModelFailure(err)
			if status.Code(err) != tt.wantCode || ok != tt.model || code != tt.wantHTTP {
				t.Fatalf("err %v: ModelFailure = %d, %v; want %s %d %v", err, code, ok, tt.wantCode, tt.wantHTTP, tt.model)
			}
		})
	}
	fa := &fakeAdapter{steps: map[string][]step{"m": {{err: rateLimited}}}, calls: map[string]int{}}
	svc := newEntryService(t, fa, Limits{})
	svc.cfg.Attempts = 1
	_, err := svc.Serve(context.Background(), chatInput("hi"), func(Delta) error { return nil })
	if st, _ := status.FromError(err); len(st.Details()) != 1 {
		t.Errorf("RetryInfo lost: %v", st.Details())
	}
}
