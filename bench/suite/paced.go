package suite

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/bench/stats"
)

// pacedDelay is the stub's pause between tokens in the paced measurement:
// a model that streams, rather than a stub that answers at once.
const pacedDelay = 5 * time.Millisecond

// pacedStreams is the concurrency of the paced measurement.
const pacedStreams = 128

// runPaced compares the CPU the gateway and nginx spend per relayed chunk
// when the model paces its tokens, the per-chunk path of a real stream.
func runPaced(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "2 wire"
	g, ng, targets, err := wirePeers(ctx, o, dir, pacedDelay)
	if err != nil {
		return err
	}
	defer g.Close()
	defer ng.Close()
	relays := targets[1:3] // nginx, gateway (gRPC)
	d := wireRound(o.Quick)
	var table strings.Builder
	table.WriteString("| run | answers/s nginx / gateway | relay CPU µs per chunk nginx / gateway | ratio |\n|---|---|---|---|\n")
	var ratios []float64
	for i := range o.Runs {
		res := map[string]roundResult{}
		for _, t := range rotate(relays, i) {
			rr, err := measureRound(ctx, t, pacedStreams, d, g.c.Stub.PID())
			if err != nil {
				return err
			}
			res[t.name] = rr
		}
		nr, gr := res["nginx"], res["gateway"]
		perChunk := func(rr roundResult) float64 { return rr.perAnswer(rr.relayCPU) / wireStubTokens }
		ratio := perChunk(gr) / perChunk(nr)
		ratios = append(ratios, ratio)
		fmt.Fprintf(&table, "| %d | %.0f / %.0f | %.2f / %.2f | %.2f× |\n", i+1, nr.rate(), gr.rate(), perChunk(nr), perChunk(gr), ratio)
		fmt.Fprintf(logw, "   paced run %d: relay CPU per chunk nginx %.2f µs gateway %.2f µs\n", i+1, perChunk(nr), perChunk(gr))
	}
	s := stats.Of(ratios)
	r.add(Figure{section, fmt.Sprintf("paced (%v between tokens, %d streams): gateway CPU per relayed chunk ÷ nginx's", pacedDelay, pacedStreams),
		s.Format("%.2f") + "×", "≤ 1.5×", verdict(s.Median <= 1.5)})
	r.detail(section, "Paced: the stub pauses %v before each of its %d tokens; %d concurrent streams through nginx and through the gateway, rounds of %v, order alternating. CPU per relayed chunk = the relay's utime+stime in the round ÷ (answers × %d).\n\n%s",
		pacedDelay, wireStubTokens, pacedStreams, d, wireStubTokens, table.String())
	return nil
}
