package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

type sourceFunc func(context.Context) (*Token, error)

func (f sourceFunc) Token(ctx context.Context) (*Token, error) { return f(ctx) }

func TestHTTPTransportSendsTheCurrentToken(t *testing.T) {
	got := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer srv.Close()
	n := 0
	src := sourceFunc(func(context.Context) (*Token, error) {
		n++
		return &Token{AccessToken: []string{"jwt-1", "jwt-2"}[n-1], Expiry: time.Now().Add(time.Hour),
			Metadata: map[string]string{"x-gitlab-realm": "self-managed"}}, nil
	})
	hc := &http.Client{Transport: NewHTTPTransport(src, srv.Client().Transport, AllowInsecure())}
	defer hc.CloseIdleConnections()
	for _, want := range []string{"Bearer jwt-1", "Bearer jwt-2"} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := <-got
		if h.Get("Authorization") != want || h.Get("X-Gitlab-Realm") != "self-managed" {
			t.Errorf("server saw %v, want %s", h, want)
		}
		if req.Header.Get("Authorization") != "" {
			t.Errorf("the caller's request was modified")
		}
	}
}

func TestHTTPTransportRefusesPlainHTTPAndSourceFailures(t *testing.T) {
	called := false
	ok := sourceFunc(func(context.Context) (*Token, error) { called = true; return &Token{AccessToken: "jwt"}, nil })
	failing := sourceFunc(func(context.Context) (*Token, error) {
		return nil, newError(codes.Unauthenticated, "invalid personal access token")
	})
	tests := []struct {
		name string
		rt   http.RoundTripper
		url  string
		code codes.Code
	}{
		{"plain http without AllowInsecure", NewHTTPTransport(ok, nil), "http://127.0.0.1:1/v1/models", codes.FailedPrecondition},
		{"source failure", NewHTTPTransport(failing, nil), "https://127.0.0.1:1/v1/models", codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.url, nil)
			_, err := tt.rt.RoundTrip(req)
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}
	if called {
		t.Error("the token was fetched for a request that could only send it in clear")
	}
}
