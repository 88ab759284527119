package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
	"github.com/airlock-dev/airlock/pkg/feature"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a fake issuer and gateway on one in-process server, and a client
// wired to them the way a tool would be.
type env struct {
	clock  *clock
	issuer *clienttest.Issuer
	gw     *clienttest.Gateway
	srv    *clienttest.Server
	ts     *client.TokenSource
	client *client.Client
}

type envOpts struct {
	pat       string
	tls       bool
	features  []string
	credsOpts []client.CredentialsOption
	entitled  []feature.Feature
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	e.issuer = clienttest.NewIssuer(e.clock.Now)
	e.issuer.AddUser("glpat-good", o.entitled...)
	e.gw = clienttest.NewGateway(e.issuer)
	var sopts []clienttest.Option
	if o.tls {
		sopts = append(sopts, clienttest.WithTLS())
	}
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) { e.issuer.Register(s); e.gw.Register(s) }, sopts...)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	t.Cleanup(srv.Close)
	if o.pat == "" {
		o.pat = "glpat-good"
	}
	ic, err := srv.Dial(grpc.WithPerRPCCredentials(client.PATCredentials(o.pat, o.credsOpts...)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ic.Close() })
	e.ts = client.NewTokenSource(issuerv1.NewTokenServiceClient(ic), client.WithClock(e.clock.Now), client.WithFeatures(o.features...))
	t.Cleanup(func() { e.ts.Close() })
	gc, err := srv.Dial(grpc.WithPerRPCCredentials(client.NewPerRPCCredentials(e.ts, o.credsOpts...)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	e.client = client.New(gc)
	return e
}

var insecureOK = []client.CredentialsOption{client.AllowInsecure()}

func collect(s *client.Stream) (string, error) {
	var b strings.Builder
	for s.Next() {
		b.WriteString(s.Text())
	}
	return b.String(), s.Err()
}

func TestStreamDeliversDeltasAndDone(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	s := e.client.Stream(context.Background(), "duo_chat", client.System("be brief"), client.User("hi"))
	text, err := collect(s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if text != "Hello from the fake gateway." {
		t.Errorf("text = %q", text)
	}
	d, err := s.Done()
	if err != nil || d.Reason() != "stop" || d.Model != "fake-model" || d.Usage == nil || d.Usage.PromptTokens != 2 || d.Usage.CompletionTokens != 5 {
		t.Errorf("done = %+v", d)
	}
}

func TestDoneBeforeTheEndIsAnError(t *testing.T) {
	e := newEnv(t, envOpts{tls: true})
	s := e.client.Stream(context.Background(), "duo_chat", client.User("hi"))
	defer s.Close()
	if !s.Next() {
		t.Fatalf("no first delta: %v", s.Err())
	}
	var ce *client.Error
	if _, err := s.Done(); !errors.As(err, &ce) || ce.Code != codes.FailedPrecondition {
		t.Fatalf("Done mid-stream = %v, want FailedPrecondition", err)
	}
}

func TestCredentialsRefusePlaintextUnlessAllowed(t *testing.T) {
	srv, err := clienttest.NewServer(func(grpc.ServiceRegistrar) {}) // plaintext
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	src := client.StaticSource(&client.Token{AccessToken: "t", Expiry: time.Now().Add(time.Hour)})
	for _, tc := range []struct {
		name  string
		creds func(...client.CredentialsOption) credentials.PerRPCCredentials
	}{
		{"token credentials", func(o ...client.CredentialsOption) credentials.PerRPCCredentials {
			return client.NewPerRPCCredentials(src, o...)
		}},
		{"PAT credentials", func(o ...client.CredentialsOption) credentials.PerRPCCredentials {
			return client.PATCredentials("glpat", o...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.creds().RequireTransportSecurity() || tc.creds(client.AllowInsecure()).RequireTransportSecurity() {
				t.Fatal("RequireTransportSecurity must be true unless AllowInsecure")
			}
			cc, err := srv.Dial(grpc.WithPerRPCCredentials(tc.creds()))
			if err == nil {
				cc.Close()
				t.Fatal("dialling plaintext with secret credentials succeeded")
			}
			if !strings.Contains(err.Error(), "transport level security") {
				t.Fatalf("err = %v", err)
			}
			cc, err = srv.Dial(grpc.WithPerRPCCredentials(tc.creds(client.AllowInsecure())))
			if err != nil {
				t.Fatalf("with AllowInsecure: %v", err)
			}
			cc.Close()
		})
	}
}

func TestErrorsCarryCodeMessageAndRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       envOpts
		failWith   error
		feature    string
		code       codes.Code
		msg        string
		retryAfter time.Duration
		partial    string
	}{
		{name: "rate limit after first delta keeps the delta and the hint", failWith: clienttest.RateLimited(3 * time.Second),
			feature: "duo_chat", code: codes.ResourceExhausted, msg: "model server rate limit exceeded", retryAfter: 3 * time.Second, partial: "Hello "},
		{name: "bad personal access token fails the mint", opts: envOpts{pat: "glpat-bad"}, feature: "duo_chat",
			code: codes.Unauthenticated, msg: "mint token: invalid personal access token"},
		{name: "token without the feature's scope is a permission error", opts: envOpts{features: []string{"duo_chat"}},
			feature: "code_completions", code: codes.PermissionDenied, msg: "Unauthorized to access code completions"},
		{name: "user not entitled to anything asked cannot mint", opts: envOpts{entitled: []feature.Feature{feature.DuoChat}, features: []string{"code_completions"}},
			feature: "code_completions", code: codes.PermissionDenied, msg: "mint token: not entitled to any requested feature"},
		{name: "unavailable model server", failWith: status.Error(codes.Unavailable, "model server unreachable"),
			feature: "duo_chat", code: codes.Unavailable, msg: "model server unreachable", partial: "Hello "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.credsOpts = insecureOK
			e := newEnv(t, tc.opts)
			e.gw.FailWith(tc.failWith)
			check := func(kind string, err error) {
				t.Helper()
				var ce *client.Error
				if !errors.As(err, &ce) {
					t.Fatalf("%s: err = %#v, want *client.Error", kind, err)
				}
				if ce.Code != tc.code || ce.Message != tc.msg || ce.RetryAfter != tc.retryAfter {
					t.Fatalf("%s: got {%v %q %v}, want {%v %q %v}", kind, ce.Code, ce.Message, ce.RetryAfter, tc.code, tc.msg, tc.retryAfter)
				}
				if status.Code(err) != tc.code {
					t.Fatalf("%s: status.Code = %v", kind, status.Code(err))
				}
			}
			s := e.client.Stream(context.Background(), tc.feature, client.User("hi"))
			text, err := collect(s)
			check("stream", err)
			if text != tc.partial {
				t.Errorf("text before the error = %q, want %q", text, tc.partial)
			}
			// Done reports the failure too, so code that only looks at
			// Done cannot mistake a failed answer for a finished one.
			if d, derr := s.Done(); derr != err || d != (client.Done{}) {
				t.Errorf("Done = %+v, %v on a failed stream, want the stream's error %v", d, derr, err)
			}
			_, err = e.client.Complete(context.Background(), tc.feature, client.User("hi"))
			check("complete", err)
		})
	}
}

func TestTokenExpiringMidSessionIsRefreshedWithoutErrors(t *testing.T) {
	e := newEnv(t, envOpts{credsOpts: insecureOK})
	e.issuer.SetTTL(10 * time.Minute)
	// Three hours of calls every 30 s of fake time: about 18 token lifetimes.
	for i := range 360 {
		if i%2 == 0 {
			if _, err := collect(e.client.Stream(context.Background(), "duo_chat", client.User("hi"))); err != nil {
				t.Fatalf("call %d at +%v: %v", i, time.Duration(i)*30*time.Second, err)
			}
		} else if _, err := e.client.Complete(context.Background(), "duo_chat", client.User("hi")); err != nil {
			t.Fatalf("call %d at +%v: %v", i, time.Duration(i)*30*time.Second, err)
		}
		e.clock.Advance(30 * time.Second)
	}
	if n := e.issuer.Mints(); n < 18 || n > 27 {
		t.Fatalf("mints = %d over 3h of 10-minute tokens, want about one per 7.5-8.5 min", n)
	}
}

func TestTokenExpiredWhileIdleIsReminted(t *testing.T) {
	e := newEnv(t, envOpts{credsOpts: insecureOK})
	if _, err := e.client.Complete(context.Background(), "duo_chat", client.User("hi")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour) // far past exp, no refresh happened meanwhile
	if _, err := e.client.Complete(context.Background(), "duo_chat", client.User("hi")); err != nil {
		t.Fatalf("after idle expiry: %v", err)
	}
	if n := e.issuer.Mints(); n != 2 {
		t.Fatalf("mints = %d, want 2", n)
	}
}

func TestCodeVariantsSendCodeContext(t *testing.T) {
	e := newEnv(t, envOpts{credsOpts: insecureOK})
	cc := &gatewayv1.CodeContext{FileName: "main.go", ContentAboveCursor: "func main() {", ContentBelowCursor: "}", Language: "go"}
	if _, err := collect(e.client.StreamCode(context.Background(), "code_completions", cc)); err != nil {
		t.Fatal(err)
	}
	got, err := e.client.CompleteCode(context.Background(), "code_generations", cc)
	if err != nil {
		t.Fatal(err)
	}
	if got.Text != "Hello from the fake gateway." || got.Done.Reason() != "stop" {
		t.Errorf("completion = %+v", got)
	}
	reqs := e.gw.Requests()
	if len(reqs) != 2 {
		t.Fatalf("requests = %d", len(reqs))
	}
	for i, want := range []string{"code_completions", "code_generations"} {
		if reqs[i].GetFeature() != want || reqs[i].GetCodeContext().GetContentAboveCursor() != "func main() {" {
			t.Errorf("request %d = %v", i, reqs[i])
		}
	}
}

func TestBreakingOutOfDeltasClosesStream(t *testing.T) {
	e := newEnv(t, envOpts{credsOpts: insecureOK})
	s := e.client.Stream(context.Background(), "duo_chat", client.User("hi"))
	for text, err := range s.Deltas() {
		if err != nil || text != "Hello " {
			t.Fatalf("first delta = %q, %v", text, err)
		}
		break
	}
	if s.Next() {
		t.Fatal("Next after break returned true")
	}
	if status.Code(s.Err()) != codes.Canceled {
		t.Fatalf("Err after break = %v, want Canceled", s.Err())
	}
}

// truncating is a gateway whose stream ends without the done message.
type truncating struct {
	gatewayv1.UnimplementedCompletionServiceServer
	extra bool // send a delta after done instead
}

func (t truncating) StreamCompletion(_ *gatewayv1.StreamCompletionRequest, ss grpc.ServerStreamingServer[gatewayv1.StreamCompletionResponse]) error {
	if err := ss.Send(&gatewayv1.StreamCompletionResponse{Text: "partial"}); err != nil {
		return err
	}
	if t.extra {
		if err := ss.Send(&gatewayv1.StreamCompletionResponse{Done: &gatewayv1.CompletionDone{}}); err != nil {
			return err
		}
		return ss.Send(&gatewayv1.StreamCompletionResponse{Text: "late"})
	}
	return nil
}

func TestStreamProtocolViolationsAreInternal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra bool
		msg   string
	}{
		{"end without done", false, "stream ended without a done message"},
		{"text after done", true, "message after the done message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) {
				gatewayv1.RegisterCompletionServiceServer(s, truncating{extra: tc.extra})
			})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			cc, err := srv.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			s := client.New(cc).Stream(context.Background(), "duo_chat")
			text, err := collect(s)
			if text != "partial" || status.Code(err) != codes.Internal || client.FromError(err).Message != tc.msg {
				t.Fatalf("got %q, %v; want partial text then Internal: %s", text, err, tc.msg)
			}
		})
	}
}

func TestFromError(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   error
		code codes.Code
		msg  string
	}{
		{"nil stays nil", nil, codes.OK, ""},
		{"status keeps code and message", status.Error(codes.NotFound, "no model"), codes.NotFound, "no model"},
		{"deadline from context", context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{"cancel from context", context.Canceled, codes.Canceled, "context canceled"},
		{"plain error is unknown", errors.New("boom"), codes.Unknown, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := client.FromError(tc.in)
			if tc.in == nil {
				if e != nil {
					t.Fatalf("FromError(nil) = %v", e)
				}
				return
			}
			if e.Code != tc.code || e.Message != tc.msg {
				t.Fatalf("got %v %q, want %v %q", e.Code, e.Message, tc.code, tc.msg)
			}
			if e.Error() != tc.code.String()+": "+tc.msg {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}
