// Package egress is the gateway's SSRF guard: a dialer that connects a model
// adapter only to addresses inside the model's trusted networks. It resolves
// the host itself, checks every address, and dials the address it checked,
// so a DNS answer that changes between check and connect (rebinding) cannot
// redirect the connection.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/airlock-dev/airlock/gateway/internal/burstconn"
	"github.com/airlock-dev/airlock/gateway/internal/h1"
)

// ErrForbidden is returned (wrapped) when a destination is outside the
// trusted networks. Callers map it to FailedPrecondition: it is the
// operator's configuration, not the caller, that is wrong.
var ErrForbidden = errors.New("egress: destination outside the model's trusted networks")

// Resolver looks up a host's addresses. *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard dials only trusted addresses.
type Guard struct {
	trusted  []netip.Prefix
	resolver Resolver
	dialer   net.Dialer
}

// New returns a guard for the given CIDRs (a bare IP means a /32 or /128).
// An empty list trusts nothing: every dial fails with ErrForbidden.
// connectTimeout bounds each TCP connect (0: no bound beyond the context).
func New(cidrs []string, connectTimeout time.Duration, r Resolver) (*Guard, error) {
	g := &Guard{resolver: r, dialer: net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	for _, c := range cidrs {
		p, err := parsePrefix(c)
		if err != nil {
			return nil, err
		}
		g.trusted = append(g.trusted, p)
	}
	return g, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("egress: invalid trusted network %q: want a CIDR such as 10.0.0.0/8", s)
}

// Allowed reports whether a is inside a trusted network.
func (g *Guard) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range g.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// DialContext resolves addr's host, refuses unless every resolved address is
// trusted, then connects to the checked addresses in order.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("egress: %s resolves to no address", host)
		}
	}
	for _, a := range addrs {
		if !g.Allowed(a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrForbidden, host, a.Unmap())
		}
	}
	var firstErr error
	for _, a := range addrs {
		c, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// burstDialContext is DialContext with each read from the network taking
// in all that has arrived, up to burstconn.Size bytes: a fast model's answer
// costs one system call per wake-up, not one per 2 KiB, while a waiting
// connection holds no extra memory.
func (g *Guard) burstDialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := g.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return burstconn.New(c), nil
}

// Transport returns an HTTP transport that dials through g. Plain-text
// HTTP/1.1 runs on the caller's goroutine (gateway/internal/h1: no
// goroutines per open stream); https, with TLS and HTTP/2, and anything
// else h1 does not take go through net/http's Transport. Both ignore proxy
// environment variables: a proxy would bypass the guard.
func (g *Guard) Transport() *h1.Transport {
	return h1.New(h1.Config{
		Dial:           g.burstDialContext,
		Fallback:       g.netHTTPTransport(),
		MaxIdlePerHost: maxIdlePerHost,
		IdleTimeout:    idleTimeout,
		ReadBufferSize: ReadBufferSize,
	})
}

// Kept connections to model servers, for both transports.
const (
	maxIdlePerHost = 256
	idleTimeout    = 90 * time.Second
)

func (g *Guard) netHTTPTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           g.burstDialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          maxIdlePerHost,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       idleTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        ReadBufferSize,
		WriteBufferSize:       WriteBufferSize,
	}
}

// The upstream connection's buffers, held per open connection and so per
// open stream (net/http's default is 4 KiB each).
const (
	// ReadBufferSize: an SSE chunk is a few hundred bytes, so 2 KiB holds
	// several queued chunks (the burst reads underneath take in up to
	// 32 KiB per system call when more is waiting). 1 KiB saved 1 KB per open stream but looked
	// 5–15 % costlier in gateway CPU per answer at 32 and 128 streams
	// (bench/findings.md), so it stays. A chunk-size line longer than this
	// is refused (net/http's ErrLineTooLong), which no honest server sends;
	// longer header lines are read in parts.
	ReadBufferSize = 2 << 10
	// WriteBufferSize (net/http's transport, so TLS only): request headers
	// and the start of the body go out in the first write; after the first
	// flush net/http hands the rest of a larger body to the connection
	// directly, so a smaller buffer costs at most one more write per
	// request. Plain-text requests are written whole from a pooled buffer.
	WriteBufferSize = 1 << 10
)
