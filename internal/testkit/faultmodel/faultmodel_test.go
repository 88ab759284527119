package faultmodel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// post sends a chat request with a fresh transport (closed afterwards, so
// no idle connection outlives the test) and returns status, headers, the
// body read until error, and that error.
func post(ctx context.Context, t *testing.T, url string) (int, http.Header, []byte, error) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

func TestFiniteAnswers(t *testing.T) {
	s := start(t, Config{Tokens: 3, RetryAfter: 7})
	tests := []struct {
		fault        Fault
		wantStatus   int
		wantRetry    string
		wantContains string
	}{
		{OK, 200, "", "data: [DONE]"},
		{Garbage, 200, "", "not json"},
		{RateLimited, 429, "7", RateLimitedMessage},
		{ServerError, 500, "", ServerErrorMessage},
		{Overloaded, 503, "7", OverloadedMessage},
		{EchoKey, 401, "", "Incorrect API key provided"},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			code, h, body, err := post(context.Background(), t, s.URL(tt.fault))
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantStatus || h.Get("Retry-After") != tt.wantRetry || !bytes.Contains(body, []byte(tt.wantContains)) {
				t.Fatalf("got %d retry-after %q body %q; want %d %q containing %q", code, h.Get("Retry-After"), body, tt.wantStatus, tt.wantRetry, tt.wantContains)
			}
		})
	}
	if got := strings.Count(string(mustBody(t, s.URL(OK))), Word); got != 3 {
		t.Fatalf("healthy answer has %d words, want 3", got)
	}
}

func mustBody(t *testing.T, url string) []byte {
	t.Helper()
	_, _, b, err := post(context.Background(), t, url)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStallsEndWhenTheClientGoesAway(t *testing.T) {
	s := start(t, Config{})
	for _, f := range []Fault{StallHeaders, StallMidStream} {
		t.Run(string(f), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, _, _, err := post(ctx, t, s.URL(f))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want the client's deadline", err)
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer wcancel()
			rec, err := s.WaitRecord(wctx, func(r Record) bool { return r.Fault == f })
			if err != nil || !rec.ClientGone {
				t.Fatalf("record = %+v, %v; want one with ClientGone", rec, err)
			}
		})
	}
}

func TestResetMidStreamIsAConnectionReset(t *testing.T) {
	s := start(t, Config{StallAfter: 1})
	code, _, body, err := post(context.Background(), t, s.URL(ResetMidStream))
	if code != 200 || !errors.Is(err, syscall.ECONNRESET) || !bytes.Contains(body, []byte(Word)) {
		t.Fatalf("got %d %q %v; want 200, one chunk, then ECONNRESET", code, body, err)
	}
}

func TestFloodsStopAtMaxWrite(t *testing.T) {
	s := start(t, Config{MaxWrite: 1 << 20})
	for _, f := range []Fault{EndlessLine, HugeBody, Endless} {
		t.Run(string(f), func(t *testing.T) {
			_, _, body, err := post(context.Background(), t, s.URL(f))
			if err != nil {
				t.Fatal(err)
			}
			if len(body) < 1<<20 || len(body) > 1<<20+64<<10 {
				t.Fatalf("body is %d bytes, want about 1 MiB", len(body))
			}
			if f == EndlessLine && bytes.Count(body, []byte("\n")) != 0 {
				t.Fatalf("endless line contains a line break")
			}
		})
	}
}

func TestFlakyCycles(t *testing.T) {
	s := start(t, Config{Tokens: 1})
	var got []string
	for i := 0; i < 4; i++ {
		code, _, _, err := post(context.Background(), t, s.URL(Flaky))
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			got = append(got, "reset")
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, http.StatusText(code))
		}
	}
	if want := "OK,Service Unavailable,OK,reset"; strings.Join(got, ",") != want {
		t.Fatalf("flaky answers = %v, want %s", got, want)
	}
}

func TestHeaderOverridesPath(t *testing.T) {
	s := start(t, Config{})
	req, _ := http.NewRequest(http.MethodPost, s.URL(OK)+"/chat/completions", nil)
	req.Header.Set(HeaderFault, string(ServerError))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || s.Requests(ServerError) != 1 || s.Requests(OK) != 0 {
		t.Fatalf("status %d, requests 500=%d ok=%d; want the header's fault", resp.StatusCode, s.Requests(ServerError), s.Requests(OK))
	}
}

func TestUnknownFaultIsNotFound(t *testing.T) {
	s := start(t, Config{})
	code, _, _, err := post(context.Background(), t, "http://"+s.Addr()+"/no-such-fault/v1")
	if err != nil || code != http.StatusNotFound {
		t.Fatalf("got %d %v, want 404", code, err)
	}
}

func TestCloseReleasesStalledHandlers(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := post(context.Background(), t, s.URL(StallHeaders))
		errc <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	for s.Live(StallHeaders) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-errc: // any outcome: the point is that it returns
	case <-time.After(5 * time.Second):
		t.Fatal("stalled request still blocked 5 s after Close")
	}
}

func TestClosedURLRefusesConnections(t *testing.T) {
	u, err := ClosedURL()
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = post(context.Background(), t, u)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want ECONNREFUSED", err)
	}
}
