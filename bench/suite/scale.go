package suite

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlock-dev/airlock/bench/load"
	"github.com/airlock-dev/airlock/bench/stats"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// streamsPerConn spreads the scale test's streams over client connections.
const streamsPerConn = 500

// runScale holds o.ScaleStreams streams open through the gateway, the stub
// emitting one chunk per second, and reads the gateway's memory per open
// stream and its CPU.
func runScale(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "3 scale"
	n := o.ScaleStreams
	chunks := max(1, int(o.ScaleDuration/time.Second))
	conns := (n + streamsPerConn - 1) / streamsPerConn
	g, err := startGatewayBench(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir, StubTokens: chunks, StubDelay: time.Second,
		GatewayArgs: []string{"--pprof"}}, conns)
	if err != nil {
		return err
	}
	defer g.Close()
	var open atomic.Int64
	t := g.target()
	t.OnFirstChunk = func() { open.Add(1) }
	// Warm the connections and the upstream pool with a few streams, then
	// take the idle baseline.
	if m, err := load.Run(ctx, t, conns, 1).Errors(); m > 0 {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	base, baseHeap, err := gatewaySample(ctx, g)
	if err != nil {
		return err
	}
	open.Store(0)

	streams := make([]load.Stream, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); streams[i] = t.Stream(ctx, i) }()
	}
	// Streams open as their first chunk arrives (after ~1 s); sample while
	// all are open, from the moment the last opened until shortly before
	// the first finish.
	rampDeadline := start.Add(o.ScaleDuration / 2)
	for open.Load() < int64(n) && time.Now().Before(rampDeadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	ramp := time.Since(start)
	opened := open.Load()
	// Heap and goroutine profiles while every stream is open: where the
	// per-stream memory goes.
	for name, path := range map[string]string{"scale-heap.pb.gz": "/debug/pprof/heap", "scale-goroutines.txt": "/debug/pprof/goroutine?debug=1"} {
		if err := fetch(ctx, "http://"+g.c.GatewayHTTP+path, filepath.Join(dir, name)); err != nil {
			fmt.Fprintf(logw, "   profile %s: %v\n", name, err)
		}
	}
	cpu0, _ := g.c.Gateway.Usage()
	t0 := time.Now()
	var rss, heap, gor []float64
	for time.Since(start) < o.ScaleDuration-2*time.Second && ctx.Err() == nil {
		u, h, err := gatewaySample(ctx, g)
		if err != nil {
			return err
		}
		page, _ := g.c.GatewayMetrics(ctx)
		goroutines, _ := cluster.Sample(page, "go_goroutines")
		rss, heap, gor = append(rss, float64(u.RSS-base.RSS)), append(heap, h-baseHeap), append(gor, goroutines)
		time.Sleep(time.Second)
	}
	cpu1, _ := g.c.Gateway.Usage()
	window := time.Since(t0)
	wg.Wait()
	total := time.Since(start)
	failed := 0
	var firstErr error
	for _, s := range streams {
		if s.Err != nil {
			if firstErr == nil {
				firstErr = s.Err
			}
			failed++
		}
	}
	perRSS := stats.Of(scale(rss, 1/float64(n)/1024))
	perHeap := stats.Of(scale(heap, 1/float64(n)/1024))
	cores := (cpu1.CPU - cpu0.CPU).Seconds() / window.Seconds()
	name := fmt.Sprintf("%d open streams", n)
	errText := "0"
	if failed > 0 {
		errText = fmt.Sprintf("%d (first: %v)", failed, firstErr)
	}
	if opened < int64(n) {
		errText += fmt.Sprintf("; only %d of %d open within %v", opened, n, ramp.Round(time.Millisecond))
	}
	r.add(Figure{section, name + ": errors", errText, "0", verdict(failed == 0 && opened == int64(n))})
	r.add(Figure{section, name + ": gateway RSS per stream", perRSS.Format("%.1f") + " KB", "≤ 40 KB", verdict(perRSS.N > 0 && perRSS.Median <= 40)})
	r.add(Figure{section, name + ": gateway Go heap in use per stream", perHeap.Format("%.1f") + " KB", "(reported)", Info})
	r.add(Figure{section, name + ": gateway CPU while holding them", fmt.Sprintf("%.3f cores (%.1f µs per relayed chunk)", cores,
		(cpu1.CPU-cpu0.CPU).Seconds()*1e6/math.Max(1, float64(n)*window.Seconds())), "(reported)", Info})
	r.detail(section, "%d streams over %d client connections (%d per connection), the stub emitting one chunk per second for %d chunks. All %d streams had their first chunk %.1f s after the first was opened; samples were taken once a second while every stream was open (%d samples; spread over samples). Memory deltas are against the idle gateway after warm-up (RSS %.1f MB, heap in use %.1f MB). Go goroutines in the gateway while holding the streams: %.0f (%.1f per stream). CPU = utime+stime over %.1f s of the holding window. Whole run %.1f s.",
		n, conns, streamsPerConn, chunks, opened, ramp.Seconds(), len(rss), float64(base.RSS)/(1<<20), baseHeap/(1<<20),
		stats.Of(gor).Median, stats.Of(gor).Median/float64(n), window.Seconds(), total.Seconds())
	fmt.Fprintf(logw, "   %d streams: %d errors, RSS %.1f KB/stream, heap %.1f KB/stream, %.3f cores\n", n, failed, perRSS.Median, perHeap.Median, cores)
	return nil
}

// gatewaySample reads the gateway's RSS (from /proc) and Go heap in use
// (from its /metrics).
func gatewaySample(ctx context.Context, g *gatewayBench) (cluster.Usage, float64, error) {
	u, err := g.c.Gateway.Usage()
	if err != nil {
		return u, 0, err
	}
	page, err := g.c.GatewayMetrics(ctx)
	if err != nil {
		return u, 0, err
	}
	h, ok := cluster.Sample(page, "go_memstats_heap_inuse_bytes")
	if !ok {
		return u, 0, fmt.Errorf("gateway /metrics has no go_memstats_heap_inuse_bytes")
	}
	return u, h, nil
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}
