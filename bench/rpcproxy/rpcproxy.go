// Package rpcproxy is a transparent gRPC proxy that counts the calls passing
// through it, by full method name. The benchmark suite puts it between the
// gateway and the issuer to count issuer RPCs per completion when the issuer
// exposes no per-method gRPC metrics; a TCP proxy could not tell calls apart.
//
// Messages are forwarded as opaque bytes (no decoding) and incoming metadata
// is passed on unchanged; nothing is logged, so credentials in metadata
// never leave the two connections.
package rpcproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"

	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/pkg/rpcserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Proxy forwards every call it receives to one backend connection.
type Proxy struct {
	backend *grpc.ClientConn
	srv     *grpc.Server
	lis     net.Listener

	mu     sync.Mutex
	counts map[string]int64
}

// Listen starts a proxy on 127.0.0.1 (a free port) forwarding to backend,
// which the proxy does not close. Close stops it.
func Listen(backend *grpc.ClientConn) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{backend: backend, lis: lis, counts: map[string]int64{}}
	// The proxy stands in for the issuer, so it keeps the issuer's keepalive
	// policy: with grpc-go's default (pings no more often than every 5
	// minutes) it answered the gateway's 30 s pings with GOAWAY
	// too_many_pings after a few minutes, and the gateway's reopened watches
	// were counted as RPCs caused by completions.
	opts := append([]grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(p.handle)},
		rpcserver.KeepaliveServerOptions()...)
	p.srv = grpc.NewServer(opts...)
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// Addr is the proxy's listen address.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Close stops the proxy at once, ending every call in flight.
func (p *Proxy) Close() { p.srv.Stop() }

// Counts returns a copy of the number of calls started per full method.
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Total returns the number of calls started through the proxy.
func (p *Proxy) Total() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, v := range p.counts {
		n += v
	}
	return n
}

// Diff returns after−before per method, omitting methods with no change,
// as sorted "method=n" strings.
func Diff(before, after map[string]int64) []string {
	var out []string
	for m, n := range after {
		if d := n - before[m]; d != 0 {
			out = append(out, m+"="+strconv.FormatInt(d, 10))
		}
	}
	sort.Strings(out)
	return out
}

// handle relays one call of any shape (unary or streaming) both ways.
func (p *Proxy) handle(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return status.Error(codes.Internal, "rpcproxy: no method name")
	}
	p.mu.Lock()
	p.counts[method]++
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(in.Context())
	ctx = metadata.NewOutgoingContext(ctx, md.Copy())
	out, err := p.backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method,
		grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	// Client → backend.
	upErr := make(chan error, 1)
	go func() {
		for {
			var m frame
			if err := in.RecvMsg(&m); err != nil {
				if errors.Is(err, io.EOF) {
					upErr <- out.CloseSend()
					return
				}
				upErr <- err
				return
			}
			if err := out.SendMsg(&m); err != nil {
				upErr <- nil // the backend's status arrives on RecvMsg
				return
			}
		}
	}()
	// Backend → client; headers first so the client sees them in order.
	if hdr, err := out.Header(); err == nil {
		if err := in.SendHeader(hdr); err != nil {
			return err
		}
	}
	for {
		var m frame
		if err := out.RecvMsg(&m); err != nil {
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err // a status error from the backend, passed on as is
		}
		if err := in.SendMsg(&m); err != nil {
			return err
		}
	}
}
