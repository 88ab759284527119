package suite

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// goProxy is the standard library's reverse proxy (httputil.ReverseProxy)
// in front of a model server, run as its own process by this binary
// (`airlock-bench go-proxy`): a second peer beside nginx, showing what a
// plain relay costs when it is written in Go, on Go's runtime and net/http,
// before any of the gateway's work (authentication, decoding, gRPC).
type goProxy struct {
	proc *cluster.Proc
	Addr string
}

// runGoProxy serves `airlock-bench go-proxy --listen ADDR --upstream HOST:PORT`:
// every request read whole and passed to upstream, every chunk of the answer flushed as it
// arrives (FlushInterval -1), kept connections to upstream as many as the
// bench's concurrency.
func runGoProxy(args []string) int {
	fs := flag.NewFlagSet("go-proxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "model server, host:port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "go-proxy: --upstream is required")
		return 2
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-proxy:", err)
		return 1
	}
	srv := &http.Server{Handler: goProxyHandler(&url.URL{Scheme: "http", Host: *upstream}), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "go-proxy:", err)
		return 1
	}
	return 0
}

// goProxyHandler is the proxy of runGoProxy in front of target.
func goProxyHandler(target *url.URL) http.Handler {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1024
	p := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		FlushInterval: -1,
		Transport:     tr,
		ErrorLog:      log.New(os.Stderr, "go-proxy: ", 0),
	}
	// The request body is read whole before it goes upstream, as nginx does
	// by default (proxy_request_buffering on): net/http's server discards the
	// unread rest of a request body when the handler writes the response head,
	// which can race the transport still sending it upstream (it then closes
	// the upstream connection mid-answer).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.ServeHTTP(w, r)
	})
}

// startGoProxy starts this binary as a go-proxy in front of upstream and
// waits until a request through it reaches upstream's /healthz.
func startGoProxy(ctx context.Context, dir, upstream string) (*goProxy, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	p, err := cluster.StartProc("go-proxy", []string{self, "go-proxy", "--listen", addr, "--upstream", upstream}, filepath.Join(dir, "go-proxy.log"))
	if err != nil {
		return nil, err
	}
	if err := waitProxying(ctx, p, addr); err != nil {
		return nil, fmt.Errorf("go-proxy %w", err)
	}
	return &goProxy{proc: p, Addr: addr}, nil
}

// PID is the proxy's process.
func (g *goProxy) PID() int { return g.proc.PID() }

// Close stops the proxy.
func (g *goProxy) Close() { g.proc.Stop(5 * time.Second) }
