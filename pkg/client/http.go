package client

import (
	"net/http"

	"google.golang.org/grpc/codes"
)

// NewHTTPTransport returns an http.RoundTripper for the gateway's HTTP API
// (the OpenAI-compatible /v1 routes). Every request it sends through base
// (nil: http.DefaultTransport) carries a token from src as "Authorization:
// Bearer <jwt>" with the token's x-gitlab-* headers, so a long-running tool
// built on an OpenAI SDK never sends an expired token: give the SDK an
// http.Client with this transport and a TokenSource behind it.
//
// Unless AllowInsecure is given, a request to an http:// URL fails
// (FailedPrecondition) before anything is sent, so the token never travels
// in clear. When src fails, the request fails with src's *Error. The
// caller's request is not modified.
func NewHTTPTransport(src Source, base http.RoundTripper, opts ...CredentialsOption) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &bearerTransport{src: src, base: base, opts: applyCredOptions(opts)}
}

type bearerTransport struct {
	src  Source
	base http.RoundTripper
	opts credOptions
}

// RoundTrip implements http.RoundTripper.
func (t *bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody := func() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
	}
	if req.URL.Scheme != "https" && !t.opts.allowInsecure {
		closeBody()
		return nil, newError(codes.FailedPrecondition, "refusing to send a token over %s://: use https, or AllowInsecure for a loopback development server", req.URL.Scheme)
	}
	tok, err := t.src.Token(req.Context())
	if err != nil {
		closeBody()
		return nil, err
	}
	r := req.Clone(req.Context())
	for k, v := range tok.requestMetadata() {
		r.Header.Set(k, v)
	}
	return t.base.RoundTrip(r)
}
