package restapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ResponseHeaderTimeout is how long the gateway may take to start its
// answer, as GitLab's Workhorse waits for the AI gateway.
const ResponseHeaderTimeout = 55 * time.Second

// HTTPGateway is the gateway's HTTP API seen from the issuer. Safe for
// concurrent use.
type HTTPGateway struct {
	base   string // without a trailing slash
	client *http.Client
}

// NewHTTPGateway returns a Gateway calling the HTTP API at baseURL (http or
// https, no query). tlsConf verifies an https gateway (nil: the system's
// roots). Redirects are not followed (GitLab does not follow them either),
// and no proxy from the environment is used: the forwarded requests carry
// tokens. It returns an error naming what is wrong with baseURL.
func NewHTTPGateway(baseURL string, tlsConf *tls.Config) (*HTTPGateway, error) {
	u, err := ParseGatewayURL(baseURL)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: ResponseHeaderTimeout,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		// The answer is relayed as the gateway wrote it.
		DisableCompression: true,
		ForceAttemptHTTP2:  tlsConf != nil,
	}
	return &HTTPGateway{
		base: strings.TrimRight(u.String(), "/"),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}, nil
}

// ParseGatewayURL checks a gateway API URL: absolute http(s), a host, no
// user info, query or fragment.
func ParseGatewayURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("want an http or https URL")
	case u.Host == "":
		return nil, errors.New("no host")
	case u.User != nil:
		return nil, errors.New("credentials in the URL are not allowed")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("a query or fragment is not allowed")
	}
	return u, nil
}

// Close releases idle connections.
func (g *HTTPGateway) Close() { g.client.CloseIdleConnections() }

// Forward implements Gateway.
func (g *HTTPGateway) Forward(ctx context.Context, path string, header http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = header.Clone()
	return g.client.Do(req)
}

var _ Gateway = (*HTTPGateway)(nil)
