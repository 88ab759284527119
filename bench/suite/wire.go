package suite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/airlock-dev/airlock/bench/load"
	"github.com/airlock-dev/airlock/bench/rpcproxy"
	"github.com/airlock-dev/airlock/bench/stats"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// unlimitedGateway lifts the gateway's per-user and global admission limits:
// the suite measures cost, not the limits (one benchmark user would hit the
// per-user defaults at once).
var unlimitedGateway = []string{
	"--user-concurrent-streams", "0", "--user-requests-per-minute", "0",
	"--max-concurrent-streams", "0", "--max-connections", "0", "--max-streams-per-conn", "1024",
}

// startCluster starts a cluster for measuring: quiet logs, and the issuer's
// per-caller limits lifted (one bench user mints thousands of tokens and
// opens 1,000 watches).
func startCluster(ctx context.Context, cfg cluster.Config) (*cluster.Cluster, error) {
	cfg.IssuerArgs = append([]string{"--log-level", "warn", "--mint-rate-per-user", "0", "--max-watches-per-caller", "0"}, cfg.IssuerArgs...)
	cfg.GatewayArgs = append([]string{"--log-level", "warn"}, cfg.GatewayArgs...)
	return cluster.Start(ctx, cfg)
}

// wireStubTokens is the answer length with the stub at zero delay: long
// enough that relay throughput, not call setup, dominates the total.
const wireStubTokens = 64

// gatewayBench is a cluster with a counting proxy between gateway and
// issuer, the token a client sends and client connections to the gateway.
type gatewayBench struct {
	c       *cluster.Cluster
	proxy   *rpcproxy.Proxy
	backend *grpc.ClientConn
	md      metadata.MD
	jwt     string // the same token, for the HTTP API
	conns   []*grpc.ClientConn
	clients []gatewayv1.CompletionServiceClient
}

func startGatewayBench(ctx context.Context, cfg cluster.Config, conns int) (_ *gatewayBench, err error) {
	g := &gatewayBench{}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	cfg.GatewayArgs = append(append([]string{}, unlimitedGateway...), cfg.GatewayArgs...)
	cfg.IssuerFront = func(issuer string) (string, error) {
		cc, err := cluster.Dial(issuer)
		if err != nil {
			return "", err
		}
		g.backend = cc
		p, err := rpcproxy.Listen(cc)
		if err != nil {
			return "", err
		}
		g.proxy = p
		return p.Addr(), nil
	}
	cfg.GatewayHTTP = true
	if g.c, err = startCluster(ctx, cfg); err != nil {
		return nil, err
	}
	tok, err := g.c.Mint(ctx, "demo", nil, 0)
	if err != nil {
		return nil, err
	}
	g.md = metadata.New(cluster.Metadata(tok))
	g.jwt = tok.AccessToken
	for range conns {
		cc, err := cluster.Dial(g.c.GatewayGRPC)
		if err != nil {
			return nil, err
		}
		g.conns = append(g.conns, cc)
		g.clients = append(g.clients, gatewayv1.NewCompletionServiceClient(cc))
	}
	return g, nil
}

func (g *gatewayBench) target() *load.Gateway {
	return &load.Gateway{Clients: g.clients, MD: g.md, Feature: "duo_chat"}
}

// httpTarget streams the same chat through the gateway's OpenAI-compatible
// HTTP API, decoding every chunk as a client library does.
func (g *gatewayBench) httpTarget() *load.Direct {
	return &load.Direct{Client: load.NewDirectClient(1024), URL: "http://" + g.c.GatewayAPI + "/v1/chat/completions",
		Body:   []byte(`{"model":"duo_chat","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`),
		Header: http.Header{"Authorization": {"Bearer " + g.jwt}}}
}

func (g *gatewayBench) Close() {
	for _, cc := range g.conns {
		cc.Close()
	}
	if g.c != nil {
		g.c.Close()
	}
	if g.proxy != nil {
		g.proxy.Close()
	}
	if g.backend != nil {
		g.backend.Close()
	}
}

// wireLevels are the concurrencies of the wire scenario.
var wireLevels = []int{1, 8, 32, 128}

// wireRound is how long each timed round runs: seconds, so ramp-up and the
// last stragglers stay a small part of every figure.
func wireRound(quick bool) time.Duration {
	if quick {
		return 300 * time.Millisecond
	}
	return 2 * time.Second
}

// ttftStreams is the concurrency at which the added time to first token is
// measured against its goal.
const ttftStreams = 32

// alternating is a target whose workers alternate between two targets,
// stream by stream, recording each one's times to first token: both paths
// are sampled at the same moments, under the same machine load.
type alternating struct {
	ts   [2]load.Target
	next []int     // per worker: which target its next stream uses
	from time.Time // streams started before are not recorded (the spread)

	mu    sync.Mutex
	ttfts [2][]time.Duration
	err   error
}

func (a *alternating) Stream(ctx context.Context, worker int) load.Stream {
	i := a.next[worker]
	a.next[worker] = 1 - i
	record := !time.Now().Before(a.from)
	s := a.ts[i].Stream(ctx, worker)
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.Err != nil {
		if a.err == nil {
			a.err = s.Err
		}
	} else if record {
		a.ttfts[i] = append(a.ttfts[i], s.TTFT)
	}
	return s
}

// mixedTTFTs runs rounds rounds of d in which c workers alternate streams
// between a and b (half the workers start with each), their first streams
// spread over spread (see load.RunSpread) and left out, and returns the
// times to first token of each.
func mixedTTFTs(ctx context.Context, a, b wireTarget, c int, spread, d time.Duration, rounds int) (ta, tb []time.Duration, err error) {
	for range rounds {
		alt := &alternating{ts: [2]load.Target{a.t, b.t}, next: make([]int, c), from: time.Now().Add(spread)}
		for w := range alt.next {
			alt.next[w] = w % 2
		}
		round := load.RunSpread(ctx, alt, c, spread, d)
		if n, err := round.Errors(); n > 0 {
			return nil, nil, fmt.Errorf("%d streams alternating %s and %s: %d failed: %w", c, a.name, b.name, n, err)
		}
		ta, tb = append(ta, alt.ttfts[0]...), append(tb, alt.ttfts[1]...)
	}
	return ta, tb, nil
}

// addedTTFTs measures what each relay adds to the time to first token over
// direct at c streams (targets as wirePeers returns them), the workers'
// first streams spread over spread, and reports the gateway's against the
// goal, the plain proxies' beside it as references.
func addedTTFTs(ctx context.Context, r *Report, section, name string, targets []wireTarget, c int, spread, d time.Duration, runs int) error {
	added := func(t wireTarget) (p50, p99 time.Duration, samples string, err error) {
		direct, relayed, err := mixedTTFTs(ctx, targets[tgtDirect], t, c, spread, d, runs)
		if err != nil {
			return 0, 0, "", err
		}
		return stats.Percentile(relayed, 50) - stats.Percentile(direct, 50),
			stats.Percentile(relayed, 99) - stats.Percentile(direct, 99),
			fmt.Sprintf(" (%d / %d samples)", len(direct), len(relayed)), nil
	}
	p50, p99, samples, err := added(targets[tgtGateway])
	if err != nil {
		return err
	}
	r.add(Figure{section, name + ": added TTFT p50 over direct" + samples, fmt.Sprintf("%.3f ms", stats.Ms(p50)), "≤ 0.5 ms", verdict(stats.Ms(p50) <= 0.5)})
	r.add(Figure{section, name + ": added TTFT p99 over direct" + samples, fmt.Sprintf("%.3f ms", stats.Ms(p99)), "≤ 2 ms", verdict(stats.Ms(p99) <= 2)})
	for _, ref := range []struct {
		t           wireTarget
		label, goal string
	}{{targets[tgtNginx], ": nginx added TTFT p50 / p99 over direct, measured the same way", "(reference: a plain proxy)"},
		{targets[tgtGoProxy], ": Go reverse proxy added TTFT p50 / p99 over direct, measured the same way", "(reference: a plain proxy in Go)"},
		{targets[tgtHTTPAPI], ": HTTP API added TTFT p50 / p99 over direct", "(reported beside gRPC)"}} {
		p50, p99, samples, err := added(ref.t)
		if err != nil {
			return err
		}
		r.add(Figure{section, name + ref.label + samples, fmt.Sprintf("%.3f / %.3f ms", stats.Ms(p50), stats.Ms(p99)), ref.goal, Info})
	}
	return nil
}

// wireTarget is one path to the stub model, measured side by side with the
// others: direct, through nginx, through the gateway.
type wireTarget struct {
	name  string
	t     load.Target
	relay int // pid of the relaying process; 0 for none (direct)
}

// roundResult is one timed round of one target, with the CPU each process
// spent in it (utime+stime from /proc/<pid>/stat, before and after).
type roundResult struct {
	answers                      int
	wall                         time.Duration
	ttfts                        []time.Duration
	relayCPU, stubCPU, clientCPU time.Duration
	relaySyscalls                int64 // read and write system calls of the relay
	chunks                       int   // text chunks (SSE events, gRPC messages) the client received
}

func (r roundResult) rate() float64 { return float64(r.answers) / r.wall.Seconds() }

// syscallsPerAnswer is the relay's read and write system calls per answer.
func (r roundResult) syscallsPerAnswer() float64 {
	return float64(r.relaySyscalls) / float64(max(r.answers, 1))
}

// chunksPerAnswer is how many text chunks the client received per answer:
// the stub's events for direct and nginx, the messages the gateway made of
// them.
func (r roundResult) chunksPerAnswer() float64 {
	return float64(r.chunks) / float64(max(r.answers, 1))
}

// perAnswer is d per answer in microseconds.
func (r roundResult) perAnswer(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(max(r.answers, 1))
}

// cpuOf is the CPU time pid has used; pid 0 is none.
func cpuOf(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	u, err := cluster.ReadUsage(pid)
	return u.CPU, err
}

// syscallsOf is how many read and write system calls pid has made; pid 0
// is none.
func syscallsOf(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	return cluster.ReadSyscalls(pid)
}

// measureRound runs t at concurrency c for d and reads the CPU of the relay,
// the stub and this process (the client) around it.
func measureRound(ctx context.Context, t wireTarget, c int, d time.Duration, stubPID int) (roundResult, error) {
	pids := []int{t.relay, stubPID, os.Getpid()}
	var before, after [3]time.Duration
	for i, p := range pids {
		var err error
		if before[i], err = cpuOf(p); err != nil {
			return roundResult{}, err
		}
	}
	sysBefore, err := syscallsOf(t.relay)
	if err != nil {
		return roundResult{}, err
	}
	round := load.RunFor(ctx, t.t, c, d)
	sysAfter, err := syscallsOf(t.relay)
	if err != nil {
		return roundResult{}, err
	}
	for i, p := range pids {
		var err error
		if after[i], err = cpuOf(p); err != nil {
			return roundResult{}, err
		}
	}
	if n, err := round.Errors(); n > 0 {
		return roundResult{}, fmt.Errorf("%d streams, %s: %d of %d failed: %w", c, t.name, n, len(round.Streams), err)
	}
	return roundResult{answers: len(round.Streams), wall: round.Wall, ttfts: round.TTFTs(),
		relayCPU: after[0] - before[0], stubCPU: after[1] - before[1], clientCPU: after[2] - before[2],
		relaySyscalls: sysAfter - sysBefore, chunks: round.Chunks()}, nil
}

// rotate returns ts starting at index i mod len(ts): each run puts another
// target first, so drift in the machine's load hits every target alike.
func rotate(ts []wireTarget, i int) []wireTarget {
	i %= len(ts)
	return append(append([]wireTarget{}, ts[i:]...), ts[:i]...)
}

// gatewayBody streams one completion through the gateway and returns the
// body the stub received for it, so the baselines send the model exactly
// what the gateway sends.
func gatewayBody(ctx context.Context, g *gatewayBench) ([]byte, error) {
	if s := g.target().Stream(ctx, 0); s.Err != nil {
		return nil, s.Err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+g.c.StubAddr+"/debug/last-request", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("reading the gateway's upstream body from the stub: %v (%d bytes)", err, len(b))
	}
	return b, nil
}

// wirePeers starts a gateway bench with the stub at delay and nginx in
// front of the same stub, and returns the targets that reach the stub.
// peers are the paths to one stub model measured side by side: the gateway
// cluster, nginx and a Go reverse proxy in front of the stub, and the
// targets through each (see the tgt* indexes).
type peers struct {
	g       *gatewayBench
	ng      *nginx
	gp      *goProxy
	targets []wireTarget
}

// Indexes of peers.targets.
const (
	tgtDirect = iota
	tgtNginx
	tgtGateway
	tgtHTTPAPI
	tgtGoProxy
)

func (p *peers) Close() {
	if p.gp != nil {
		p.gp.Close()
	}
	if p.ng != nil {
		p.ng.Close()
	}
	if p.g != nil {
		p.g.Close()
	}
}

func wirePeers(ctx context.Context, o Options, dir string, delay time.Duration) (_ *peers, err error) {
	p := &peers{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.g, err = startGatewayBench(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir, StubTokens: wireStubTokens, StubDelay: delay}, 4); err != nil {
		return nil, err
	}
	stub := p.g.c.StubAddr
	if p.ng, err = startNginx(ctx, filepath.Join(dir, "nginx"), stub); err != nil {
		return nil, err
	}
	if p.gp, err = startGoProxy(ctx, filepath.Join(dir, "go-proxy"), stub); err != nil {
		return nil, err
	}
	body, err := gatewayBody(ctx, p.g)
	if err != nil {
		return nil, err
	}
	via := func(addr string) *load.Direct {
		return &load.Direct{Client: load.NewDirectClient(1024), URL: "http://" + addr + "/v1/chat/completions", Body: body}
	}
	p.targets = []wireTarget{
		tgtDirect:  {"direct", via(stub), 0},
		tgtNginx:   {"nginx", via(p.ng.Addr), p.ng.PID()},
		tgtGateway: {"gateway", p.g.target(), p.g.c.Gateway.PID()},
		tgtHTTPAPI: {"gateway HTTP API", p.g.httpTarget(), p.g.c.Gateway.PID()},
		tgtGoProxy: {"Go proxy", via(p.gp.Addr), p.gp.PID()},
	}
	// Warm every path (connections, token cache, upstream pools) untimed.
	for _, t := range p.targets {
		if n, err := load.Run(ctx, t.t, wireLevels[len(wireLevels)-1], 2).Errors(); n > 0 {
			return nil, fmt.Errorf("warm-up %s: %d streams failed: %w", t.name, n, err)
		}
	}
	return p, nil
}

func runWire(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "2 wire"
	p, err := wirePeers(ctx, o, dir, 0)
	if err != nil {
		return err
	}
	defer p.Close()
	g, ng, targets := p.g, p.ng, p.targets
	d := wireRound(o.Quick)
	r.nginx = ng.Version
	rpcsBefore, completions := g.proxy.Counts(), 0

	var table strings.Builder
	table.WriteString("| streams | run | answers/s direct / nginx / gateway | relay CPU µs per answer nginx / Go proxy / gateway | relay read(2)/write(2) calls per answer nginx (no recvfrom) / Go proxy / gateway | text chunks per answer nginx / gateway | stub CPU µs per answer (direct / nginx / gateway rounds) | client CPU µs per answer (direct / nginx / gateway) | TTFT p50 direct / nginx / gateway |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range wireLevels {
		var cpuRatios, rateRatios, directRatios, httpCPU, httpRate, goCPU []float64
		for i := range o.Runs {
			res := map[string]roundResult{}
			for _, t := range rotate(targets, i) {
				rr, err := measureRound(ctx, t, c, d, g.c.Stub.PID())
				if err != nil {
					return err
				}
				res[t.name] = rr
			}
			dr, nr, gr, hr, pr := res["direct"], res["nginx"], res["gateway"], res["gateway HTTP API"], res["Go proxy"]
			goCPU = append(goCPU, pr.perAnswer(pr.relayCPU)/nr.perAnswer(nr.relayCPU))
			completions += gr.answers + hr.answers
			httpCPU = append(httpCPU, hr.perAnswer(hr.relayCPU)/nr.perAnswer(nr.relayCPU))
			httpRate = append(httpRate, hr.rate()/nr.rate())
			cpuRatios = append(cpuRatios, gr.perAnswer(gr.relayCPU)/nr.perAnswer(nr.relayCPU))
			rateRatios = append(rateRatios, gr.rate()/nr.rate())
			directRatios = append(directRatios, 100*gr.rate()/dr.rate())
			fmt.Fprintf(&table, "| %d | %d | %.0f / %.0f / %.0f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.1f / %.1f | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.3f / %.3f / %.3f ms |\n",
				c, i+1, dr.rate(), nr.rate(), gr.rate(), nr.perAnswer(nr.relayCPU), pr.perAnswer(pr.relayCPU), gr.perAnswer(gr.relayCPU),
				nr.syscallsPerAnswer(), pr.syscallsPerAnswer(), gr.syscallsPerAnswer(), nr.chunksPerAnswer(), gr.chunksPerAnswer(),
				dr.perAnswer(dr.stubCPU), nr.perAnswer(nr.stubCPU), gr.perAnswer(gr.stubCPU),
				dr.perAnswer(dr.clientCPU), nr.perAnswer(nr.clientCPU), gr.perAnswer(gr.clientCPU),
				stats.Ms(stats.Percentile(dr.ttfts, 50)), stats.Ms(stats.Percentile(nr.ttfts, 50)), stats.Ms(stats.Percentile(gr.ttfts, 50)))
			fmt.Fprintf(logw, "   c=%-3d run %d: answers/s direct %.0f nginx %.0f gateway %.0f; relay CPU per answer nginx %.1f µs Go proxy %.1f µs gateway %.1f µs; read+write calls per answer nginx (no recvfrom) %.1f gateway %.1f; gateway messages per answer %.1f\n",
				c, i+1, dr.rate(), nr.rate(), gr.rate(), nr.perAnswer(nr.relayCPU), pr.perAnswer(pr.relayCPU), gr.perAnswer(gr.relayCPU), nr.syscallsPerAnswer(), gr.syscallsPerAnswer(), gr.chunksPerAnswer())
		}
		cpu, rate, vsDirect := stats.Of(cpuRatios), stats.Of(rateRatios), stats.Of(directRatios)
		name := fmt.Sprintf("c=%d", c)
		cpuGoal := 1.5
		if c == 1 {
			cpuGoal = 2
		}
		r.add(Figure{section, name + ": gateway CPU per answer ÷ nginx's", cpu.Format("%.2f") + "×", fmt.Sprintf("≤ %.1f×", cpuGoal), verdict(cpu.Median <= cpuGoal)})
		r.add(Figure{section, name + ": answers/s, gateway ÷ nginx", rate.Format("%.2f") + "×", "≥ 0.9×", verdict(rate.Median >= 0.9)})
		r.add(Figure{section, name + ": answers/s, gateway vs direct", vsDirect.Format("%.1f") + " %", "(reported)", Info})
		r.add(Figure{section, name + ": Go reverse proxy (httputil) CPU per answer ÷ nginx's", stats.Of(goCPU).Format("%.2f") + "×", "(reference: a plain proxy in Go)", Info})
		hc, hrate := stats.Of(httpCPU), stats.Of(httpRate)
		r.add(Figure{section, name + ": HTTP API (OpenAI SSE): gateway CPU per answer ÷ nginx's / answers/s ÷ nginx", hc.Format("%.2f") + "× / " + hrate.Format("%.2f") + "×", "(reported beside gRPC)", Info})
		if c == ttftStreams {
			if err := addedTTFTs(ctx, r, section, name, targets, c, 0, d, o.Runs); err != nil {
				return err
			}
		}
	}
	r.detail(section, "Stub model at zero delay, %d tokens per answer. Three paths to the same stub: direct, through nginx (%s; one process, `proxy_buffering off`, upstream keepalive, access log on), through Go's standard reverse proxy (`httputil.ReverseProxy` with `FlushInterval: -1` and kept upstream connections, its own process: what a plain relay costs on Go's runtime and net/http), through the gateway (gRPC), and through the gateway's OpenAI-compatible HTTP API (SSE, decoded like the direct client). The direct and nginx clients send the model exactly the body the gateway sends (read back from the stub) and decode every chunk with encoding/json, as a client library does; the gateway client decodes every protobuf message. Each run is one timed round of %v per path at the same concurrency, back to back, the order rotating from run to run. CPU is utime+stime of each process from /proc/<pid>/stat before and after its round, divided by the answers completed: \"relay\" is nginx or the gateway. System calls are syscr + syscw of /proc/<pid>/io over the same round: the read(2) and write(2) families, complete for the Go relays (Go reads and writes sockets with read and write), but nginx reads its upstream with recvfrom(2), which that accounting leaves out, so nginx's column counts only its writes and client reads (strace of nginx relaying paced chunks: one recvfrom, one writev and ≈ 0.36 epoll_wait per chunk). Added TTFT at %d streams comes from separate rounds in which every worker alternates direct and gateway streams, so both paths are sampled at the same moments under the same load: the gateway's percentile minus direct's over the samples of all runs together. Client, relay and stub share the machine's %d cores, so answers/s is a ratio of total CPU; the relay's CPU per answer is the steady figure.\n\n%s",
		wireStubTokens, ng.Version, d, ttftStreams, runtime.NumCPU(), table.String())

	if err := runPaced(ctx, o, dir+"-paced", r, logw); err != nil {
		return fmt.Errorf("paced: %w", err)
	}

	// Issuer RPCs caused by completions: everything the proxy saw during the
	// timed rounds (the gateway's watches were opened before them).
	rpcs := rpcproxy.Diff(rpcsBefore, g.proxy.Counts())
	var n int64
	for _, m := range rpcs {
		var c int64
		if _, err := fmt.Sscanf(m[strings.LastIndexByte(m, '=')+1:], "%d", &c); err != nil {
			return fmt.Errorf("issuer RPC count %q: %w", m, err)
		}
		n += c
	}
	per := float64(n) / float64(max(completions, 1))
	r.add(Figure{"5 issuer", "issuer RPCs per completion (steady state)", fmt.Sprintf("%.4f (%d RPCs / %d completions)", per, n, completions), "0", verdict(n == 0)})
	r.detail("5 issuer", "Counted by a gRPC proxy (bench/rpcproxy) between the gateway and the issuer, over the wire scenario's timed rounds (%d completions). RPCs started in that window: %s. Calls before it (the gateway's start-up): %s.",
		completions, orNone(rpcs), orNone(rpcproxy.Diff(nil, rpcsBefore)))
	page, err := g.c.IssuerMetrics(ctx)
	switch {
	case err != nil:
		r.detail("5 issuer", "The issuer's /metrics could not be read: %v.", err)
	default:
		if _, ok := cluster.Sample(page, "grpc_server_handled_total"); ok {
			r.detail("5 issuer", "The issuer's /metrics exposes grpc_server_handled_total.")
		} else {
			r.detail("5 issuer", "The issuer's /metrics exposes no per-method gRPC counters (no grpc_server_handled_total), hence the counting proxy.")
		}
	}
	return nil
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
