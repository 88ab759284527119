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

// pacedSpread is how long the paced TTFT rounds spread their workers'
// first streams over: one answer's duration, so that new streams keep
// arriving evenly rather than in waves of ttftStreams at once (streams
// started together end together when the model paces every one alike).
const pacedSpread = wireStubTokens * pacedDelay

// pacedStreams is the concurrency of the paced measurement.
const pacedStreams = 128

// runPaced compares the CPU the gateway and nginx spend per relayed chunk
// when the model paces its tokens, the per-chunk path of a real stream.
func runPaced(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "2 wire"
	p, err := wirePeers(ctx, o, dir, pacedDelay)
	if err != nil {
		return err
	}
	defer p.Close()
	g, targets := p.g, p.targets
	relays := []wireTarget{targets[tgtNginx], targets[tgtGateway], targets[tgtGoProxy]}
	d := wireRound(o.Quick)
	var table strings.Builder
	table.WriteString("| run | answers/s nginx / Go proxy / gateway | relay CPU µs per chunk nginx / Go proxy / gateway | gateway ÷ nginx | Go proxy ÷ nginx |\n|---|---|---|---|---|\n")
	var ratios, goRatios []float64
	for i := range o.Runs {
		res := map[string]roundResult{}
		for _, t := range rotate(relays, i) {
			rr, err := measureRound(ctx, t, pacedStreams, d, g.c.Stub.PID())
			if err != nil {
				return err
			}
			res[t.name] = rr
		}
		nr, gr, pr := res["nginx"], res["gateway"], res["Go proxy"]
		perChunk := func(rr roundResult) float64 { return rr.perAnswer(rr.relayCPU) / wireStubTokens }
		ratio, goRatio := perChunk(gr)/perChunk(nr), perChunk(pr)/perChunk(nr)
		ratios, goRatios = append(ratios, ratio), append(goRatios, goRatio)
		fmt.Fprintf(&table, "| %d | %.0f / %.0f / %.0f | %.2f / %.2f / %.2f | %.2f× | %.2f× |\n", i+1, nr.rate(), pr.rate(), gr.rate(), perChunk(nr), perChunk(pr), perChunk(gr), ratio, goRatio)
		fmt.Fprintf(logw, "   paced run %d: relay CPU per chunk nginx %.2f µs Go proxy %.2f µs gateway %.2f µs\n", i+1, perChunk(nr), perChunk(pr), perChunk(gr))
	}
	s := stats.Of(ratios)
	r.add(Figure{section, fmt.Sprintf("paced (%v between tokens, %d streams): gateway CPU per relayed chunk ÷ nginx's", pacedDelay, pacedStreams),
		s.Format("%.2f") + "×", "≤ 1.5×", verdict(s.Median <= 1.5)})
	r.add(Figure{section, fmt.Sprintf("paced (%v between tokens, %d streams): Go reverse proxy (httputil) CPU per relayed chunk ÷ nginx's", pacedDelay, pacedStreams),
		stats.Of(goRatios).Format("%.2f") + "×", "(reference: a plain proxy in Go)", Info})
	// What a relay adds to the first token of a stream when the model paces
	// its tokens, the machine busy relaying but not saturated: the relay's own
	// latency, apart from queueing behind a saturated CPU (the zero-delay figure).
	// A paced answer takes wireStubTokens × pacedDelay, so the rounds are longer to
	// collect enough samples for a p99: about 1,600 per path over three runs
	// (at 800, the p99 rests on 8 samples and moved by 2 ms from run to run).
	ttftRound := 6 * d
	if err := addedTTFTs(ctx, r, section, fmt.Sprintf("paced (%v between tokens), %d streams", pacedDelay, ttftStreams), targets, ttftStreams, pacedSpread, ttftRound, o.Runs); err != nil {
		return err
	}
	r.detail(section, "Paced: the stub pauses %v before each of its %d tokens; %d concurrent streams through nginx, Go's reverse proxy and the gateway, rounds of %v, order alternating. CPU per relayed chunk = the relay's utime+stime in the round ÷ (answers × %d). Added TTFT paced: %d streams in rounds of %v in which every worker alternates direct and relayed streams, as at zero delay, the workers' first streams spread evenly over %v (one answer) and not counted. Without the spread, workers that start together finish together, since every paced answer takes as long, and each next wave of %d new streams arrives at once and queues behind itself: a measure of bursts, not of %d open streams.\n\n%s",
		pacedDelay, wireStubTokens, pacedStreams, d, wireStubTokens, ttftStreams, ttftRound, pacedSpread, ttftStreams, ttftStreams, table.String())
	return nil
}
