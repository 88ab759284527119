package keyset

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a JWKS that tests can change, fail or empty.
type jwksServer struct {
	mu           sync.Mutex
	body         []byte
	status       int
	cacheControl string
	hits         atomic.Int32
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cacheControl != "" {
		w.Header().Set("Cache-Control", s.cacheControl)
	}
	if s.status != 0 {
		w.WriteHeader(s.status)
	}
	_, _ = w.Write(s.body)
}

func (s *jwksServer) set(body []byte, status int, cc string) {
	s.mu.Lock()
	s.body, s.status, s.cacheControl = body, status, cc
	s.mu.Unlock()
}

func newJWKSServer(t *testing.T, body []byte, cc string) (*jwksServer, string) {
	js := &jwksServer{body: body, cacheControl: cc}
	hs := httptest.NewServer(js)
	t.Cleanup(hs.Close)
	return js, hs.URL + "/oauth/discovery/keys"
}

func httpOptions() Options {
	return Options{MinRefresh: 20 * time.Millisecond, MaxRefresh: time.Hour, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
}

func TestHTTPHonoursCacheControl(t *testing.T) {
	tests := []struct {
		name         string
		cacheControl string
		wantMin      int32
		wantMax      int32
	}{
		{"max-age of a day polls once in 300 ms", "public, max-age=86400", 1, 1},
		{"no-cache polls at the minimum interval", "no-cache", 4, 100},
		{"no header polls at the minimum interval", "", 4, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js, url := newJWKSServer(t, jwksJSON(t, pubJWK(t, 0)), tt.cacheControl)
			c := NewHTTP(url, nil, httpOptions())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { c.Run(ctx); close(done) }()
			eventually(t, "first fetch", c.Ready)
			time.Sleep(300 * time.Millisecond)
			cancel()
			<-done
			if n := js.hits.Load(); n < tt.wantMin || n > tt.wantMax {
				t.Fatalf("%d fetches, want %d..%d", n, tt.wantMin, tt.wantMax)
			}
		})
	}
}

func TestRefreshIntervalIsClamped(t *testing.T) {
	lo, hi := time.Minute, time.Hour
	tests := []struct {
		header []string
		want   time.Duration
	}{
		{[]string{"max-age=86400"}, hi},
		{[]string{"public", "max-age=600"}, 10 * time.Minute},
		{[]string{"max-age=5"}, lo},
		{[]string{"max-age=-1"}, lo},
		{[]string{"max-age=abc"}, lo},
		{[]string{"max-age=99999999999999999999"}, lo},
		{[]string{"no-store, max-age=600"}, lo},
		{nil, lo},
	}
	for _, tt := range tests {
		if got := refreshInterval(tt.header, lo, hi); got != tt.want {
			t.Errorf("refreshInterval(%q) = %s, want %s", tt.header, got, tt.want)
		}
	}
}

func TestHTTPRefetchesOnUnknownKid(t *testing.T) {
	js, url := newJWKSServer(t, jwksJSON(t, pubJWK(t, 0)), "max-age=86400")
	c := NewHTTP(url, nil, httpOptions())
	run(t, c)
	eventually(t, "first fetch", c.Ready)
	js.set(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 1)), 0, "max-age=86400")
	k, err := c.Lookup(context.Background(), "k1")
	if err != nil || k.KeyID() != "k1" {
		t.Fatalf("Lookup(k1) after rotation = %v, %v", k, err)
	}
	if c.Revision() != 2 {
		t.Fatalf("revision %d after a content change, want 2", c.Revision())
	}
}

func TestHTTPFailedFetchNeverReplacesAGoodSet(t *testing.T) {
	clk := newClock()
	js, url := newJWKSServer(t, jwksJSON(t, pubJWK(t, 0)), "max-age=86400")
	opts := httpOptions()
	opts.Now = clk.Now
	c := NewHTTP(url, nil, opts)
	run(t, c)
	eventually(t, "first fetch", c.Ready)
	bad := []struct {
		body   string
		status int
	}{
		{`{"keys":[]}`, 0},
		{`{"keys":[]}`, http.StatusInternalServerError},
		{`<html>maintenance</html>`, 0},
		{``, http.StatusNotFound},
	}
	for _, b := range bad {
		js.set([]byte(b.body), b.status, "max-age=86400")
		clk.Advance(time.Minute) // past the refetch rate limit
		if _, err := c.Lookup(context.Background(), "k9"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Lookup(k9) = %v", err)
		}
		if _, err := c.Lookup(context.Background(), "k0"); err != nil {
			t.Fatalf("good key lost after a %d %q response: %v", b.status, b.body, err)
		}
	}
	if c.Revision() != 1 {
		t.Fatalf("revision %d, want the first set kept", c.Revision())
	}
}
