package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/pkg/healthprobe"
)

// proc is a running binary; its output is kept (bounded) for failure
// reports.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func startProc(binDir, name string, args ...string) (*proc, error) {
	p := &proc{name: name, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits, killing after 10 s.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitHealthy(ctx context.Context, p *proc, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if healthprobe.Check(ctx, addr, "", nil, time.Second) == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited: %s", p.name, p.out.String())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at %s not healthy: %w", p.name, addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cluster is one issuer, one gateway and one stub model on loopback.
type cluster struct {
	dataDir                  string
	issuerGRPC, issuerHTTP   string
	gatewayGRPC, gatewayHTTP string
	stubAddr                 string
	issuer, gateway, stub    *proc
	issuerConn, gatewayConn  *grpc.ClientConn
	metrics                  *http.Transport // own pool, closed in stop
}

func startCluster(ctx context.Context, binDir, dataDir string, stubTokens int, gatewayArgs []string) (c *cluster, err error) {
	c = &cluster{dataDir: dataDir, metrics: &http.Transport{}}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	for _, a := range []*string{&c.issuerGRPC, &c.issuerHTTP, &c.gatewayGRPC, &c.gatewayHTTP, &c.stubAddr} {
		if *a, err = freeAddr(); err != nil {
			return c, err
		}
	}
	if c.stub, err = startProc(binDir, "stubmodel", "--addr", c.stubAddr, "--tokens", strconv.Itoa(stubTokens), "--delay", "1ms"); err != nil {
		return c, err
	}
	if c.issuer, err = startProc(binDir, "issuer", "--dev", "--data-dir", filepath.Join(dataDir, "issuer"),
		"--grpc-addr", c.issuerGRPC, "--http-addr", c.issuerHTTP, "--issuer-url", c.issuerURL()); err != nil {
		return c, err
	}
	if err = waitHealthy(ctx, c.issuer, c.issuerGRPC); err != nil {
		return c, err
	}
	args := append([]string{"--plaintext", "--grpc-addr", c.gatewayGRPC, "--http-addr", c.gatewayHTTP, "--api-http-addr", "",
		"--issuer-addr", c.issuerGRPC, "--issuer-token-file", c.credential("gateway"),
		"--expected-issuer", c.issuerURL()}, gatewayArgs...)
	if c.gateway, err = startProc(binDir, "gateway", args...); err != nil {
		return c, err
	}
	if err = waitHealthy(ctx, c.gateway, c.gatewayGRPC); err != nil {
		return c, err
	}
	if c.issuerConn, err = grpc.NewClient(c.issuerGRPC, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return c, err
	}
	if c.gatewayConn, err = grpc.NewClient(c.gatewayGRPC, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return c, err
	}
	return c, nil
}

func (c *cluster) stop() {
	c.metrics.CloseIdleConnections()
	if c.gatewayConn != nil {
		c.gatewayConn.Close()
	}
	if c.issuerConn != nil {
		c.issuerConn.Close()
	}
	c.gateway.stop()
	c.issuer.stop()
	c.stub.stop()
}

func (c *cluster) issuerURL() string { return "http://" + c.issuerHTTP }

func (c *cluster) credential(user string) string {
	return filepath.Join(c.dataDir, "issuer", "credentials", user+".token")
}

// asUser returns ctx carrying user's personal access token for the issuer.
func (c *cluster) asUser(ctx context.Context, user string) (context.Context, error) {
	b, err := os.ReadFile(c.credential(user))
	if err != nil {
		return nil, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(b))), nil
}

// gatewayRuntime is what the gateway's /metrics says about its own
// resources.
type gatewayRuntime struct {
	Goroutines   float64
	HeapInuse    float64
	ResidentSize float64
}

func (c *cluster) runtime(ctx context.Context) (gatewayRuntime, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.gatewayHTTP+"/metrics", nil)
	if err != nil {
		return gatewayRuntime{}, err
	}
	resp, err := (&http.Client{Transport: c.metrics, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return gatewayRuntime{}, err
	}
	defer resp.Body.Close()
	m, err := parseMetrics(io.LimitReader(resp.Body, 8<<20), "go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes")
	if err != nil {
		return gatewayRuntime{}, err
	}
	return gatewayRuntime{Goroutines: m["go_goroutines"], HeapInuse: m["go_memstats_heap_inuse_bytes"], ResidentSize: m["process_resident_memory_bytes"]}, nil
}

// parseMetrics reads the value of each named unlabelled series from a
// Prometheus text exposition; every name must be present.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(" "))
		if !ok || !want[string(name)] {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(value)), 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", name, err)
		}
		out[string(name)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("metric %s missing", n)
		}
	}
	return out, nil
}
