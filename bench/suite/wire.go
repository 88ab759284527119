package suite

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
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

// wireLevel is one concurrency level of the wire scenario.
type wireLevel struct {
	concurrency, perWorker int
}

func wireLevels(quick bool) []wireLevel {
	if quick {
		return []wireLevel{{1, 20}, {32, 2}, {256, 1}}
	}
	return []wireLevel{{1, 200}, {32, 12}, {256, 4}}
}

// wireRun is one side-by-side pair of rounds at one level.
type wireRun struct {
	direct, gw                       load.Round
	addP50, addP99, totP50D, totP50G time.Duration
	rateD, rateG, ttftP50D, ttftP50G float64
}

func pairOf(d, g load.Round) wireRun {
	r := wireRun{direct: d, gw: g}
	dt, gt := d.TTFTs(), g.TTFTs()
	r.addP50 = stats.Percentile(gt, 50) - stats.Percentile(dt, 50)
	r.addP99 = stats.Percentile(gt, 99) - stats.Percentile(dt, 99)
	r.totP50D, r.totP50G = stats.Percentile(d.Totals(), 50), stats.Percentile(g.Totals(), 50)
	r.ttftP50D, r.ttftP50G = stats.Ms(stats.Percentile(dt, 50)), stats.Ms(stats.Percentile(gt, 50))
	r.rateD, r.rateG = d.AnswerChunkRate(wireStubTokens), g.AnswerChunkRate(wireStubTokens)
	return r
}

func runWire(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "2 wire"
	g, err := startGatewayBench(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir, StubTokens: wireStubTokens, StubDelay: 0}, 4)
	if err != nil {
		return err
	}
	defer g.Close()
	levels := wireLevels(o.Quick)
	direct := &load.Direct{Client: load.NewDirectClient(512), URL: "http://" + g.c.StubAddr + "/v1/chat/completions"}
	gw := g.target()

	// Warm both paths (connections, token cache, upstream pool) untimed.
	for _, t := range []load.Target{direct, gw} {
		if n, err := load.Run(ctx, t, 32, 2).Errors(); n > 0 {
			return fmt.Errorf("warm-up: %d streams failed: %w", n, err)
		}
	}
	rpcsBefore, completions := g.proxy.Counts(), 0

	var table strings.Builder
	table.WriteString("| streams | run | direct TTFT p50 | gateway TTFT p50 | added TTFT p50 | added TTFT p99 | total p50 direct / gateway | chunks/s direct | chunks/s gateway | gateway/direct |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, lv := range levels {
		var runs []wireRun
		for i := range o.Runs {
			// Interleave, and alternate which goes first, so drift in the
			// machine's load hits both sides alike.
			var d, gr load.Round
			if i%2 == 0 {
				d = load.Run(ctx, direct, lv.concurrency, lv.perWorker)
				gr = load.Run(ctx, gw, lv.concurrency, lv.perWorker)
			} else {
				gr = load.Run(ctx, gw, lv.concurrency, lv.perWorker)
				d = load.Run(ctx, direct, lv.concurrency, lv.perWorker)
			}
			completions += len(gr.Streams)
			if n, err := d.Errors(); n > 0 {
				return fmt.Errorf("%d streams, direct: %d failed: %w", lv.concurrency, n, err)
			}
			if n, err := gr.Errors(); n > 0 {
				return fmt.Errorf("%d streams, gateway: %d failed: %w", lv.concurrency, n, err)
			}
			w := pairOf(d, gr)
			runs = append(runs, w)
			fmt.Fprintf(&table, "| %d | %d | %.3f ms | %.3f ms | %.3f ms | %.3f ms | %.2f / %.2f ms | %.0f | %.0f | %.1f %% |\n",
				lv.concurrency, i+1, w.ttftP50D, w.ttftP50G, stats.Ms(w.addP50), stats.Ms(w.addP99),
				stats.Ms(w.totP50D), stats.Ms(w.totP50G), w.rateD, w.rateG, 100*w.rateG/w.rateD)
			fmt.Fprintf(logw, "   %3d streams run %d: added TTFT p50 %.3f ms p99 %.3f ms, throughput %.1f %% of direct\n",
				lv.concurrency, i+1, stats.Ms(w.addP50), stats.Ms(w.addP99), 100*w.rateG/w.rateD)
		}
		addP50 := stats.Of(mapRuns(runs, func(w wireRun) float64 { return stats.Ms(w.addP50) }))
		addP99 := stats.Of(mapRuns(runs, func(w wireRun) float64 { return stats.Ms(w.addP99) }))
		ratio := stats.Of(mapRuns(runs, func(w wireRun) float64 { return 100 * w.rateG / w.rateD }))
		name := fmt.Sprintf("%d streams", lv.concurrency)
		if lv.concurrency == 32 {
			r.add(Figure{section, name + ": added TTFT p50", addP50.Format("%.3f") + " ms", "≤ 0.5 ms", verdict(addP50.Median <= 0.5)})
			r.add(Figure{section, name + ": added TTFT p99", addP99.Format("%.3f") + " ms", "≤ 2 ms", verdict(addP99.Median <= 2)})
		} else {
			r.add(Figure{section, name + ": added TTFT p50 / p99", addP50.Format("%.3f") + " / " + fmt.Sprintf("%.3f", addP99.Median) + " ms", "(reported)", Info})
		}
		r.add(Figure{section, name + ": relay throughput vs direct", ratio.Format("%.1f") + " %", "≥ 80 %", verdict(ratio.Median >= 80)})
	}
	r.detail(section, "Stub model at zero delay, %d tokens per answer; each run is a direct round and a gateway round back to back (order alternating), the same number of streams each. \"added\" = gateway percentile − direct percentile of the same run. Throughput = model chunks relayed per second of round wall time (completed answers × %d chunks each): the gateway coalesces deltas into fewer gRPC messages while its client lags, so counting received messages would undercount it; the text delivered is the same.\n\n%s",
		wireStubTokens, wireStubTokens, table.String())

	// Issuer RPCs caused by completions: everything the proxy saw during the
	// timed rounds (the gateway's watches were opened before them).
	rpcs := rpcproxy.Diff(rpcsBefore, g.proxy.Counts())
	var n int64
	for _, m := range rpcs {
		var c int64
		fmt.Sscanf(m[strings.LastIndexByte(m, '=')+1:], "%d", &c)
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

func mapRuns(runs []wireRun, f func(wireRun) float64) []float64 {
	out := make([]float64, len(runs))
	for i, w := range runs {
		out[i] = f(w)
		if math.IsInf(out[i], 0) {
			out[i] = math.NaN()
		}
	}
	return out
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
