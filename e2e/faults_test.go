package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// The gateway under fault runs with short upstream timeouts so that every
// fault resolves in about a second.
const faultTimeout = 500 * time.Millisecond

var faultGatewayArgs = []string{
	"--upstream-connect-timeout", faultTimeout.String(),
	"--upstream-first-byte-timeout", faultTimeout.String(),
	"--upstream-idle-timeout", faultTimeout.String(),
	"--upstream-total-timeout", "20s",
}

// faultModel is the fault model server's configuration in every fault test.
var faultModel = faultmodel.Config{Tokens: 4}

// The feature that the faulty models serve; the healthy stub keeps
// serving healthyFeature throughout.
const (
	faultFeature   = "duo_chat"
	healthyFeature = "code_completions"
)

// untilFailing binds feature to model and calls it until a call fails: the
// calls before that were still routed (by a catalog not yet updated) to the
// healthy model the feature was bound to. It returns the first failure and
// how long that call took.
func (c *testCluster) untilFailing(md map[string]string, feature, model string) (error, time.Duration) {
	c.t.Helper()
	c.bind(feature, model)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		start := time.Now()
		_, err := c.stream(withMetadata(md), feature)
		if err != nil {
			return err, time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("feature %s bound to %s still succeeds after 10 s", feature, model)
	return nil, 0
}

// untilHealthy binds feature back to the stub and waits until it serves.
func (c *testCluster) untilHealthy(md map[string]string, feature string) {
	c.t.Helper()
	c.bind(feature, "stub")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if text, err := c.stream(withMetadata(md), feature); err == nil && text == stubAnswer {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("feature %s not healthy 10 s after binding it back to the stub", feature)
}

// healthyTraffic streams healthyFeature back to back until stop and
// reports the count of successes and the first failure.
func (c *testCluster) healthyTraffic(md map[string]string, stop <-chan struct{}) (wait func() (int, error)) {
	var (
		wg    sync.WaitGroup
		ok    int
		first error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			text, err := c.stream(withMetadata(md), healthyFeature)
			if err == nil && text != stubAnswer {
				err = fmt.Errorf("text %q, want the stub's answer", text)
			}
			if err != nil && first == nil {
				first = err
			}
			if err == nil {
				ok++
			}
		}
	}()
	return func() (int, error) { wg.Wait(); return ok, first }
}

func retryDelay(err error) time.Duration {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

func TestModelServerFaults(t *testing.T) {
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: faultGatewayArgs})
	fm := c.Faults
	md := cluster.Metadata(c.mint(nil, 0))
	closed, err := faultmodel.ClosedURL()
	if err != nil {
		t.Fatal(err)
	}

	// Attempts: the gateway retries once (two attempts) only failures that
	// are transient and happen before any text reached the caller.
	tests := []struct {
		name      string
		fault     faultmodel.Fault // "" for the refused connection
		wantCode  codes.Code
		wantMsg   string
		wantRetry time.Duration
		attempts  int
		min, max  time.Duration
		maxBytes  int64 // bound on what the model server could write, if > 0
	}{
		{"connection refused", "", codes.Unavailable, "model server unavailable: cannot reach the model server", 0, 0, 0, 2 * time.Second, 0},
		// One time-to-first-byte budget per call: a stall is not retried into
		// twice the wait.
		{"stall before headers", faultmodel.StallHeaders, codes.DeadlineExceeded, "model server time-to-first-byte timeout", 0, 1, faultTimeout, faultTimeout + time.Second, 0},
		{"stall mid-stream", faultmodel.StallMidStream, codes.DeadlineExceeded, "model server idle timeout", 0, 1, faultTimeout, faultTimeout + time.Second, 0},
		{"reset mid-stream", faultmodel.ResetMidStream, codes.Unavailable, "model server unavailable: connection to the model server lost mid-stream", 0, 1, 0, time.Second, 0},
		{"garbage", faultmodel.Garbage, codes.Internal, "model server sent a malformed stream: malformed stream: invalid JSON chunk", 0, 1, 0, time.Second, 0},
		{"one endless line", faultmodel.EndlessLine, codes.Internal, "model server sent a malformed stream: stream event exceeds 1048576 bytes", 0, 1, 0, 2 * time.Second, 16 << 20},
		{"body far larger than allowed", faultmodel.HugeBody, codes.Internal, "model server sent a malformed stream: response body exceeds 67108864 bytes", 0, 1, 0, 10 * time.Second, 80 << 20},
		{"429 with retry-after", faultmodel.RateLimited, codes.ResourceExhausted, "model server is rate limiting: " + faultmodel.RateLimitedMessage, 2 * time.Second, 1, 0, time.Second, 0},
		{"500", faultmodel.ServerError, codes.Unavailable, "model server unavailable: " + faultmodel.ServerErrorMessage, 0, 2, 0, 2 * time.Second, 0},
		// The gateway waits out a short Retry-After before its retry, but
		// only within the call's time-to-first-byte budget: here the 2 s
		// hint is longer than the budget (faultTimeout), so the caller gets
		// Unavailable with the hint at once instead of after 2 s.
		{"503 with retry-after", faultmodel.Overloaded, codes.Unavailable, "model server unavailable: " + faultmodel.OverloadedMessage, 2 * time.Second, 1, 0, time.Second, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := fmt.Sprintf("fault-%d", i)
			endpoint := closed
			if tt.fault != "" {
				endpoint = fm.URL(tt.fault)
			}
			c.createModel(model, endpoint, "")
			before := fm.Requests(tt.fault)

			stop := make(chan struct{})
			wait := c.healthyTraffic(md, stop)
			err, took := c.untilFailing(md, faultFeature, model)
			close(stop)
			healthy, healthyErr := wait()

			st, _ := status.FromError(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if got := retryDelay(err); got != tt.wantRetry {
				t.Errorf("RetryInfo delay = %v, want %v", got, tt.wantRetry)
			}
			if took < tt.min || took > tt.max {
				t.Errorf("failed after %v, want within [%v, %v]", took.Round(time.Millisecond), tt.min, tt.max)
			}
			if tt.fault != "" {
				if got := fm.Requests(tt.fault) - before; got != tt.attempts {
					t.Errorf("model server saw %d attempts, want %d", got, tt.attempts)
				}
				// Every attempt must be over: no upstream request outlives
				// the caller's status.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				for fm.Live(tt.fault) != 0 && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
				if n := fm.Live(tt.fault); n != 0 {
					t.Errorf("%d upstream requests still open 2 s after the caller's status", n)
				}
			}
			if tt.maxBytes > 0 {
				if w := fm.Written(tt.fault); w > tt.maxBytes {
					t.Errorf("model server wrote %d bytes before the gateway stopped reading, want ≤ %d", w, tt.maxBytes)
				}
			}
			if healthyErr != nil || healthy == 0 {
				t.Errorf("healthy feature during the fault: %d ok, first error %v", healthy, healthyErr)
			}
			c.untilHealthy(md, faultFeature)
		})
	}
}

func TestCancelMidStreamClosesUpstreamWithin100ms(t *testing.T) {
	// A long idle timeout: only the caller's cancellation may end the call.
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: []string{"--upstream-idle-timeout", "30s"}})
	fm := c.Faults
	c.createModel("stalls", fm.URL(faultmodel.StallMidStream), "")
	md := cluster.Metadata(c.mint(nil, 0))
	c.bind(faultFeature, "stalls")

	gw := gatewayv1.NewCompletionServiceClient(dial(t, c.GatewayGRPC))
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithCancel(withMetadata(md))
		st, err := gw.StreamCompletion(ctx, &gatewayv1.StreamCompletionRequest{Feature: faultFeature,
			Messages: []*gatewayv1.Message{{Role: "user", Content: "Say hello"}}})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		m, err := st.Recv()
		if err != nil || m.GetText() != faultmodel.Word {
			// Still routed to the stub: the catalog has not seen the binding.
			cancel()
			if attempt > 100 {
				t.Fatalf("first message %v, %v; want the stalling model's first word", m, err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		before := len(fm.Records(faultmodel.StallMidStream))
		cancelled := time.Now()
		cancel()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		rec, err := fm.WaitRecord(wctx, func(r faultmodel.Record) bool {
			return r.Fault == faultmodel.StallMidStream && r.Start.Before(cancelled) && r.End.After(cancelled)
		})
		if err != nil {
			t.Fatalf("model server never saw the request end (records before: %d): %v", before, err)
		}
		if !rec.ClientGone {
			t.Fatalf("upstream request ended without the gateway going away: %+v", rec)
		}
		if d := rec.End.Sub(cancelled); d > 100*time.Millisecond {
			t.Fatalf("upstream request closed %v after the caller cancelled, want ≤ 100ms", d)
		} else {
			t.Logf("upstream request closed %v after the caller cancelled", d.Round(time.Microsecond))
		}
		return
	}
}

func TestSlowConsumerHoldsBoundedMemory(t *testing.T) {
	const (
		rssGrowthBound = 32 << 20 // the gateway's RSS growth while the client stalls
		writtenBound   = 16 << 20 // what the model server can push before it is paused
	)
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: faultGatewayArgs})
	fm := c.Faults
	c.createModel("floods", fm.URL(faultmodel.Endless), "")
	md := cluster.Metadata(c.mint(nil, 0))
	vmRSS := func() int64 {
		u, err := c.Gateway.Usage()
		if err != nil {
			t.Fatal(err)
		}
		return u.RSS
	}
	baseline := vmRSS()
	c.bind(faultFeature, "floods")

	// A client with a fixed 64 KiB window (no BDP growth) that reads one
	// message and then nothing more.
	cc, err := grpc.NewClient(c.GatewayGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(withMetadata(md))
	defer cancel()
	var st gatewayv1.CompletionService_StreamCompletionClient
	for attempt := 0; ; attempt++ {
		st, err = gatewayv1.NewCompletionServiceClient(cc).StreamCompletion(ctx, &gatewayv1.StreamCompletionRequest{Feature: faultFeature,
			Messages: []*gatewayv1.Message{{Role: "user", Content: "Say hello"}}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.Recv()
		if err == nil && strings.HasPrefix(m.GetText(), faultmodel.Word) {
			break
		}
		if attempt > 100 {
			t.Fatalf("first message %v, %v; want the flooding model's text", m, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The model server must come to a stop: the gateway blocks in Send, its
	// adapter stops reading, and TCP flow control pauses the server.
	var samples []int64
	peakRSS := baseline
	for i := 0; i < 12; i++ {
		time.Sleep(250 * time.Millisecond)
		samples = append(samples, fm.Written(faultmodel.Endless))
		peakRSS = max(peakRSS, vmRSS())
	}
	last, earlier := samples[len(samples)-1], samples[len(samples)-5]
	t.Logf("model server wrote %v (MiB, every 250ms); gateway RSS baseline %d MiB, peak %d MiB",
		mib(samples), baseline>>20, peakRSS>>20)
	if last > writtenBound {
		t.Errorf("model server wrote %d bytes to a stalled client, want ≤ %d", last, writtenBound)
	}
	if last-earlier > 1<<20 {
		t.Errorf("model server still writing after 2 s of a stalled client: %d → %d bytes in the last second", earlier, last)
	}
	if peakRSS-baseline > rssGrowthBound {
		t.Errorf("gateway RSS grew %d MiB while the client stalled, want ≤ %d MiB", (peakRSS-baseline)>>20, rssGrowthBound>>20)
	}

	// Others are served meanwhile.
	if text, err := c.stream(withMetadata(md), healthyFeature); err != nil || text != stubAnswer {
		t.Errorf("another feature while a client stalls: %q, %v", text, err)
	}

	// The stalled client leaves: the upstream request ends with it.
	cancel()
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if _, err := fm.WaitRecord(wctx, func(r faultmodel.Record) bool { return r.Fault == faultmodel.Endless }); err != nil {
		t.Errorf("upstream request still open 5 s after the stalled client left: %v", err)
	}
}

func mib(b []int64) []string {
	out := make([]string, len(b))
	for i, v := range b {
		out[i] = fmt.Sprintf("%.1f", float64(v)/(1<<20))
	}
	return out
}

func TestIssuerStalledMidWatch(t *testing.T) {
	c := newCluster(t)
	md := cluster.Metadata(c.mint(nil, 0))
	if err := c.Issuer.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = c.Issuer.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume) // a stopped process would ignore the harness's SIGTERM

	// The issuer is frozen with its watch streams open: the gateway serves
	// on the keys it holds.
	stop := make(chan struct{})
	ok, failed, lastErr, wait := c.flow(md, stop)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("with the issuer stopped: %d ok, %d failed (last error: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}

	// After SIGCONT the same watch delivers a rotation: a token signed by
	// the new key verifies.
	resume()
	keys := issuerv1.NewKeyServiceClient(dial(t, c.IssuerGRPC))
	ctx, cancel := context.WithTimeout(c.asUser(context.Background(), "admin"), 5*time.Second)
	defer cancel()
	if _, err := keys.RotateKeys(ctx, &issuerv1.RotateKeysRequest{}); err != nil {
		t.Fatalf("RotateKeys after SIGCONT: %v", err)
	}
	fresh := cluster.Metadata(c.mint(nil, 0))
	deadline := time.Now().Add(5 * time.Second)
	for {
		text, err := c.stream(withMetadata(fresh), "duo_chat")
		if err == nil && text == stubAnswer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token from the rotated key still refused 5 s after SIGCONT: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if text, err := c.stream(withMetadata(md), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("token minted before the stall, after recovery: %v", err)
	}
}

// A model that stalls before its headers, with a fallback that stalls too:
// the caller waits one --upstream-first-byte-timeout in all, not one per
// attempt (it was four: two attempts on each model).
func TestFirstByteBudgetSpansRetriesAndFallback(t *testing.T) {
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: faultGatewayArgs})
	fm := c.Faults
	md := cluster.Metadata(c.mint(nil, 0))
	c.createModel("stall-fallback", fm.URL(faultmodel.StallHeaders), "")
	models := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
	if _, err := models.CreateModel(c.asUser(context.Background(), "admin"), &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
		Name: "stall-primary", Family: "general", Provider: "openai_compatible", Endpoint: fm.URL(faultmodel.StallHeaders),
		Identifier: "fault-primary", TrustedNetworks: []string{"127.0.0.1/32"}, FallbackModel: "stall-fallback",
	}}); err != nil {
		t.Fatal(err)
	}
	before := fm.Requests(faultmodel.StallHeaders)
	err, took := c.untilFailing(md, faultFeature, "stall-primary")
	if st, _ := status.FromError(err); st.Code() != codes.DeadlineExceeded {
		t.Fatalf("status = %v, want DeadlineExceeded", err)
	}
	if took < faultTimeout || took > faultTimeout+time.Second {
		t.Fatalf("caller waited %v, want one budget of %v", took.Round(time.Millisecond), faultTimeout)
	}
	if got := fm.Requests(faultmodel.StallHeaders) - before; got != 1 {
		t.Errorf("model servers saw %d attempts, want 1 (no attempt starts once the budget is spent)", got)
	}
}
