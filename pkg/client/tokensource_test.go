package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is a settable clock shared by a test and the code under test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeMinter mints "tok-N" tokens living ttl on clock, or fails with err.
// While gate is non-nil each call waits for it.
type fakeMinter struct {
	clock *fakeClock
	ttl   time.Duration

	mu    sync.Mutex
	calls int
	err   error
	gate  chan struct{}
	reqs  []*issuerv1.MintTokenRequest
	resp  *issuerv1.MintTokenResponse // overrides the minted answer
}

func (m *fakeMinter) MintToken(ctx context.Context, req *issuerv1.MintTokenRequest, _ ...grpc.CallOption) (*issuerv1.MintTokenResponse, error) {
	m.mu.Lock()
	gate := m.gate
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	m.reqs = append(m.reqs, req)
	if m.err != nil {
		return nil, m.err
	}
	if m.resp != nil {
		return m.resp, nil
	}
	tok := fmt.Sprintf("tok-%d", m.calls)
	return &issuerv1.MintTokenResponse{
		Token:      tok,
		Jti:        fmt.Sprintf("jti-%d", m.calls),
		ExpireTime: timestamppb.New(m.clock.Now().Add(m.ttl)),
		Scopes:     []string{"duo_chat"},
		Metadata: map[string]string{
			"authorization":        "Bearer " + tok,
			"x-gitlab-instance-id": "inst",
			"X-Gitlab-Realm":       "self-managed",
			"x-other":              "dropped",
		},
	}, nil
}

func (m *fakeMinter) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *fakeMinter) set(f func(m *fakeMinter)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func newSource(t *testing.T, opts ...TokenSourceOption) (*TokenSource, *fakeMinter, *fakeClock) {
	t.Helper()
	clock := newClock()
	m := &fakeMinter{clock: clock, ttl: time.Hour}
	s := NewTokenSource(m, append([]TokenSourceOption{WithClock(clock.Now)}, opts...)...)
	s.jitter = func() float64 { return 0 } // refresh at exactly 75 % of the lifetime
	t.Cleanup(func() { _ = s.Close() })
	return s, m, clock
}

// waitIdle waits until no mint is in flight.
func waitIdle(t *testing.T, s *TokenSource) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		idle := s.inflight == nil
		s.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("mint still in flight after 5s")
}

func mustToken(t *testing.T, s *TokenSource) *Token {
	t.Helper()
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestTokenSourceMintsOnFirstUseAndCaches(t *testing.T) {
	s, m, clock := newSource(t, WithFeatures("duo_chat"), WithTTL(30*time.Minute))
	tok := mustToken(t, s)
	if tok.AccessToken != "tok-1" || tok.ID != "jti-1" || !tok.Expiry.Equal(epoch.Add(time.Hour)) {
		t.Fatalf("token = %+v (access %q)", tok, tok.AccessToken)
	}
	clock.Advance(30 * time.Minute)
	if again := mustToken(t, s); again != tok {
		t.Fatalf("second Token minted again: %v", again)
	}
	if m.Calls() != 1 {
		t.Fatalf("mints = %d, want 1", m.Calls())
	}
	req := m.reqs[0]
	if got := req.GetFeatures(); len(got) != 1 || got[0] != "duo_chat" {
		t.Errorf("features = %v", got)
	}
	if got := req.GetTtl().AsDuration(); got != 30*time.Minute {
		t.Errorf("ttl = %v", got)
	}
}

func TestTokenSourceKeepsOnlyGitLabMetadata(t *testing.T) {
	s, _, _ := newSource(t)
	md := mustToken(t, s).requestMetadata()
	want := map[string]string{
		"authorization":        "Bearer tok-1",
		"x-gitlab-instance-id": "inst",
		"x-gitlab-realm":       "self-managed",
	}
	if len(md) != len(want) {
		t.Fatalf("metadata = %v, want %v", md, want)
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("metadata[%s] = %q, want %q", k, md[k], v)
		}
	}
}

func TestTokenSourceColdCallersShareOneMint(t *testing.T) {
	s, m, _ := newSource(t)
	gate := make(chan struct{})
	m.set(func(m *fakeMinter) { m.gate = gate })

	const n = 16
	var wg sync.WaitGroup
	toks := make([]*Token, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = s.Token(context.Background())
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the callers queue on the mint
	close(gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("caller %d got %v, %v", i, toks[i], errs[i])
		}
	}
	if m.Calls() != 1 {
		t.Fatalf("mints = %d, want 1", m.Calls())
	}
}

func TestTokenSourceRefreshesInBackgroundWithoutBlocking(t *testing.T) {
	s, m, clock := newSource(t)
	old := mustToken(t, s)
	gate := make(chan struct{})
	m.set(func(m *fakeMinter) { m.gate = gate })

	clock.Advance(45 * time.Minute) // exactly the refresh point (jitter 0)
	start := time.Now()
	for range 5 {
		if got := mustToken(t, s); got != old {
			t.Fatalf("got %v while refreshing, want the cached token", got)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Token blocked %v during a background refresh", d)
	}
	close(gate)
	waitIdle(t, s)
	if got := mustToken(t, s); got.AccessToken != "tok-2" {
		t.Fatalf("after refresh got %v, want tok-2", got)
	}
	if m.Calls() != 2 {
		t.Fatalf("mints = %d, want 2 (one background refresh)", m.Calls())
	}
}

func TestTokenSourceRefreshPointIsJittered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		jitter float64
		at     time.Duration
	}{
		{"lowest jitter refreshes at 75 percent", 0, 45 * time.Minute},
		{"highest jitter refreshes at 85 percent", 1, 51 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m, clock := newSource(t)
			s.jitter = func() float64 { return tc.jitter }
			mustToken(t, s)
			clock.Advance(tc.at - time.Second)
			mustToken(t, s)
			waitIdle(t, s)
			if m.Calls() != 1 {
				t.Fatalf("refreshed before %v", tc.at)
			}
			clock.Advance(time.Second)
			mustToken(t, s)
			waitIdle(t, s)
			if m.Calls() != 2 {
				t.Fatalf("did not refresh at %v", tc.at)
			}
		})
	}
}

func TestTokenSourceFailedRefreshKeepsTokenUntilExpiry(t *testing.T) {
	s, m, clock := newSource(t)
	old := mustToken(t, s)
	m.set(func(m *fakeMinter) { m.err = status.Error(codes.Unavailable, "issuer down") })

	clock.Advance(50 * time.Minute)
	for range 3 {
		if got := mustToken(t, s); got != old {
			t.Fatalf("got %v, want the old token while it is valid", got)
		}
		waitIdle(t, s)
		clock.Advance(2 * time.Minute) // past any backoff, so each call retries
	}
	if m.Calls() < 3 {
		t.Fatalf("mints = %d, want background retries", m.Calls())
	}
	clock.Advance(5 * time.Minute) // 1h: the old token has expired
	_, err := s.Token(context.Background())
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable || e.Message != "mint token: issuer down" {
		t.Fatalf("err = %v, want Unavailable: mint token: issuer down", err)
	}
	m.set(func(m *fakeMinter) { m.err = nil })
	clock.Advance(2 * time.Minute)
	if got := mustToken(t, s); got == old {
		t.Fatal("recovered source still returns the expired token")
	}
}

func TestTokenSourceBacksOffAfterFailure(t *testing.T) {
	s, m, clock := newSource(t)
	m.set(func(m *fakeMinter) { m.err = status.Error(codes.Unauthenticated, "invalid personal access token") })
	for range 5 {
		if _, err := s.Token(context.Background()); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("err = %v, want Unauthenticated", err)
		}
	}
	if m.Calls() != 1 {
		t.Fatalf("mints = %d during backoff, want 1", m.Calls())
	}
	clock.Advance(time.Second) // the first backoff is under 1s
	if _, err := s.Token(context.Background()); err == nil {
		t.Fatal("want the error again")
	}
	if m.Calls() != 2 {
		t.Fatalf("mints = %d after backoff, want 2", m.Calls())
	}
}

func TestTokenSourceRejectsBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name string
		resp *issuerv1.MintTokenResponse
		msg  string
	}{
		{"no token", &issuerv1.MintTokenResponse{ExpireTime: timestamppb.New(epoch.Add(time.Hour))}, "mint token: issuer returned no token"},
		{"no expiry", &issuerv1.MintTokenResponse{Token: "t"}, "mint token: issuer returned no expire_time"},
		{"already expired", &issuerv1.MintTokenResponse{Token: "t", ExpireTime: timestamppb.New(epoch)}, "mint token: issuer returned a token that expired at 2026-01-02T03:04:05Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m, _ := newSource(t)
			m.set(func(m *fakeMinter) { m.resp = tc.resp })
			_, err := s.Token(context.Background())
			if e := FromError(err); e == nil || e.Code != codes.Internal || e.Message != tc.msg {
				t.Fatalf("err = %v, want Internal: %s", err, tc.msg)
			}
		})
	}
}

func TestTokenSourceCallerCancelDoesNotFailOthers(t *testing.T) {
	s, m, _ := newSource(t)
	gate := make(chan struct{})
	m.set(func(m *fakeMinter) { m.gate = gate })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := s.Token(ctx); errc <- err }()
	okc := make(chan error, 1)
	go func() { _, err := s.Token(context.Background()); okc <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v, want Canceled", err)
	}
	close(gate)
	if err := <-okc; err != nil {
		t.Fatalf("other caller got %v", err)
	}
}

func TestTokenSourceCloseStopsMintsAndRefusesTokens(t *testing.T) {
	s, m, _ := newSource(t)
	m.set(func(m *fakeMinter) { m.gate = make(chan struct{}) }) // never released
	errc := make(chan error, 1)
	go func() { _, err := s.Token(context.Background()); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	_ = s.Close() // cancels the blocked mint and waits for it
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("waiting caller got %v, want Canceled", err)
	}
	_, err := s.Token(context.Background())
	if !errors.Is(err, ErrClosed) || status.Code(err) != codes.Canceled {
		t.Fatalf("Token after Close = %v, want ErrClosed", err)
	}
}

func TestTokenNeverPrintsSecret(t *testing.T) {
	tok := &Token{AccessToken: "secret-jwt", ID: "j1", Expiry: epoch}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(f, tok); strings.Contains(out, "secret-jwt") {
			t.Errorf("%s printed the token: %s", f, out)
		}
	}
	pat := PATCredentials("glpat-secret")
	for _, f := range []string{"%v", "%+v", "%s"} {
		if out := fmt.Sprintf(f, pat); strings.Contains(out, "glpat-secret") {
			t.Errorf("%s printed the PAT: %s", f, out)
		}
	}
}

func TestStaticSourceRefusesExpiredToken(t *testing.T) {
	clock := newClock()
	src := staticSource{tok: &Token{AccessToken: "t", Expiry: epoch.Add(time.Minute)}, now: clock.Now}
	if _, err := src.Token(context.Background()); err != nil {
		t.Fatalf("valid static token: %v", err)
	}
	clock.Advance(time.Minute)
	if _, err := src.Token(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("expired static token: %v, want Unauthenticated", err)
	}
}
