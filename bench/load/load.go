// Package load is the suite's bounded load generator: it runs a fixed number
// of streamed completions against a target with a fixed concurrency and
// records, per stream, the time to the first token, the total time and the
// number of text chunks. Targets are the gateway (gRPC) and the stub model
// itself (HTTP SSE), so the two can be measured side by side.
package load

import (
	"context"
	"sync"
	"time"
)

// Stream is the outcome of one streamed completion.
type Stream struct {
	TTFT   time.Duration // request start → first non-empty text chunk
	Total  time.Duration // request start → end of stream
	Chunks int           // non-empty text chunks received
	Err    error
}

// Target performs one streamed completion; worker is the caller's index,
// for spreading work over connections.
type Target interface {
	Stream(ctx context.Context, worker int) Stream
}

// Round is the outcome of one Run.
type Round struct {
	Streams []Stream
	Wall    time.Duration // first start → last end
}

// Errors counts failed streams and returns the first error.
func (r Round) Errors() (int, error) {
	n := 0
	var first error
	for _, s := range r.Streams {
		if s.Err != nil {
			if first == nil {
				first = s.Err
			}
			n++
		}
	}
	return n, first
}

// ChunkRate is text chunks received per second of wall time, over the
// successful streams.
func (r Round) ChunkRate() float64 {
	if r.Wall <= 0 {
		return 0
	}
	n := 0
	for _, s := range r.Streams {
		if s.Err == nil {
			n += s.Chunks
		}
	}
	return float64(n) / r.Wall.Seconds()
}

// AnswerChunkRate is model chunks relayed per second of wall time: the
// successful streams times the chunks in one answer (perAnswer). Counting
// received messages would undercount the gateway, which coalesces deltas
// into fewer messages while its client lags; the text is the same.
func (r Round) AnswerChunkRate(perAnswer int) float64 {
	if r.Wall <= 0 {
		return 0
	}
	n := 0
	for _, s := range r.Streams {
		if s.Err == nil {
			n++
		}
	}
	return float64(n*perAnswer) / r.Wall.Seconds()
}

// Chunks is the text chunks the successful streams received, in all.
func (r Round) Chunks() int {
	n := 0
	for _, s := range r.Streams {
		if s.Err == nil {
			n += s.Chunks
		}
	}
	return n
}

// TTFTs and Totals return the successful streams' timings.
func (r Round) TTFTs() []time.Duration {
	return r.pick(func(s Stream) time.Duration { return s.TTFT })
}

// Totals returns the successful streams' total times.
func (r Round) Totals() []time.Duration {
	return r.pick(func(s Stream) time.Duration { return s.Total })
}

func (r Round) pick(f func(Stream) time.Duration) []time.Duration {
	out := make([]time.Duration, 0, len(r.Streams))
	for _, s := range r.Streams {
		if s.Err == nil {
			out = append(out, f(s))
		}
	}
	return out
}

// Run starts concurrency workers that each perform perWorker streams one
// after another, and waits for all of them. The count is bounded by
// construction; ctx cancels streams in flight.
func Run(ctx context.Context, t Target, concurrency, perWorker int) Round {
	streams := make([]Stream, concurrency*perWorker)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				streams[w*perWorker+i] = t.Stream(ctx, w)
			}
		}()
	}
	wg.Wait()
	return Round{Streams: streams, Wall: time.Since(start)}
}

// RunFor starts concurrency workers that each perform streams one after
// another until d has passed since the start (a stream in flight then
// finishes), and waits for all of them. Rounds of seconds, rather than of
// a fixed count, keep ramp-up and the last stragglers a small part of the
// figures.
func RunFor(ctx context.Context, t Target, concurrency int, d time.Duration) Round {
	return RunSpread(ctx, t, concurrency, 0, d)
}

// RunSpread is RunFor with the workers' first streams spread evenly over
// spread (worker w starts at w × spread / concurrency), the round then
// lasting d more. Workers started together stay together when every stream
// takes about as long (a model pacing its tokens): each wave of new streams
// arrives at once and queues behind itself, which measures bursts, not the
// steady load of concurrency streams. Spread over one stream's duration,
// arrivals stay spread. A Target that records figures should leave out
// streams started during the spread, when fewer than concurrency run.
func RunSpread(ctx context.Context, t Target, concurrency int, spread, d time.Duration) Round {
	perWorker := make([][]Stream, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(spread + d)
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if spread > 0 {
				select {
				case <-time.After(spread * time.Duration(w) / time.Duration(concurrency)):
				case <-ctx.Done():
					return
				}
			}
			for ctx.Err() == nil && time.Now().Before(deadline) {
				perWorker[w] = append(perWorker[w], t.Stream(ctx, w))
			}
		}()
	}
	wg.Wait()
	r := Round{Wall: time.Since(start)}
	for _, ss := range perWorker {
		r.Streams = append(r.Streams, ss...)
	}
	return r
}
