package suite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/bench/stats"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// watchersPerConn spreads the watch streams over connections as separate
// gateways would (each gateway holds one connection).
const watchersPerConn = 100

// runIssuer measures what a key rotation costs the issuer when many
// gateways watch its keys: time until every watcher has the new revision,
// and the issuer's CPU time from the RotateKeys call to the last delivery.
func runIssuer(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "5 issuer"
	c, err := startCluster(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir, NoGateway: true, NoStub: true})
	if err != nil {
		return err
	}
	defer c.Close()
	actx, err := c.AsUser(ctx, "admin")
	if err != nil {
		return err
	}
	adminCC, err := cluster.Dial(c.IssuerGRPC)
	if err != nil {
		return err
	}
	defer adminCC.Close()
	keys := issuerv1.NewKeyServiceClient(adminCC)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := openWatchers(wctx, c.IssuerGRPC, o.Watchers)
	if err != nil {
		return err
	}
	defer w.close()

	var table strings.Builder
	table.WriteString("| rotation | RotateKeys latency | delivery p50 | delivery p99 | all delivered | issuer CPU |\n|---|---|---|---|---|---|\n")
	var all, cpu []float64
	for i := range o.Runs {
		rev := w.revision()
		before, err := c.Issuer.Usage()
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := keys.RotateKeys(actx, &issuerv1.RotateKeysRequest{}); err != nil {
			return fmt.Errorf("RotateKeys: %w", err)
		}
		rpc := time.Since(start)
		lat, err := w.waitAbove(ctx, rev, start, 30*time.Second)
		if err != nil {
			return err
		}
		after, err := c.Issuer.Usage()
		if err != nil {
			return err
		}
		last := stats.Percentile(lat, 100)
		used := after.CPU - before.CPU
		all, cpu = append(all, stats.Ms(last)), append(cpu, stats.Ms(used))
		fmt.Fprintf(&table, "| %d | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.0f ms |\n", i+1, stats.Ms(rpc),
			stats.Ms(stats.Percentile(lat, 50)), stats.Ms(stats.Percentile(lat, 99)), stats.Ms(last), stats.Ms(used))
		fmt.Fprintf(logw, "   rotation %d: all %d watchers updated after %v, issuer CPU %v\n", i+1, len(lat), last.Round(time.Millisecond), used)
	}
	r.add(Figure{section, fmt.Sprintf("key rotation to %d watchers: all delivered", o.Watchers), stats.Of(all).Format("%.1f") + " ms", "(reported)", Info})
	r.add(Figure{section, fmt.Sprintf("key rotation to %d watchers: issuer CPU", o.Watchers), stats.Of(cpu).Format("%.0f") + " ms", "(reported)", Info})
	r.detail(section, "Key rotation: %d WatchKeys streams (%d per connection) opened from the bench tool; each row calls RotateKeys as admin and waits until every stream has received a revision above the one it held. Latencies are from the RotateKeys call. Issuer CPU is utime+stime from /proc between the call and the last delivery; it includes generating the next prepared key.\n\n%s",
		o.Watchers, watchersPerConn, table.String())
	return nil
}

// watchers are WatchKeys streams that record the latest revision each has
// seen and when.
type watchers struct {
	conns []*grpc.ClientConn
	mu    sync.Mutex
	cond  *sync.Cond
	rev   []uint64
	at    []time.Time
	err   error
	wg    sync.WaitGroup
}

func openWatchers(ctx context.Context, addr string, n int) (*watchers, error) {
	w := &watchers{rev: make([]uint64, n), at: make([]time.Time, n)}
	w.cond = sync.NewCond(&w.mu)
	var client issuerv1.KeyServiceClient
	for i := range n {
		if i%watchersPerConn == 0 {
			cc, err := cluster.Dial(addr)
			if err != nil {
				w.close()
				return nil, err
			}
			w.conns = append(w.conns, cc)
			client = issuerv1.NewKeyServiceClient(cc)
		}
		st, err := client.WatchKeys(ctx, &issuerv1.WatchKeysRequest{})
		if err != nil {
			w.close()
			return nil, fmt.Errorf("WatchKeys: %w", err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				m, err := st.Recv()
				now := time.Now()
				w.mu.Lock()
				if err != nil {
					if w.err == nil && ctx.Err() == nil {
						w.err = fmt.Errorf("watch %d: %w", i, err)
					}
					w.cond.Broadcast()
					w.mu.Unlock()
					return
				}
				w.rev[i], w.at[i] = m.GetKeySet().GetRevision(), now
				w.cond.Broadcast()
				w.mu.Unlock()
			}
		}()
	}
	// Every watcher first receives the current set.
	if _, err := w.waitAbove(ctx, 0, time.Now(), 30*time.Second); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// revision is the lowest revision any watcher holds.
func (w *watchers) revision() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	low := w.rev[0]
	for _, r := range w.rev {
		low = min(low, r)
	}
	return low
}

// waitAbove waits until every watcher holds a revision above rev and returns
// each one's delay since start.
func (w *watchers) waitAbove(ctx context.Context, rev uint64, start time.Time, timeout time.Duration) ([]time.Duration, error) {
	timer := time.AfterFunc(timeout, func() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() })
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { w.mu.Lock(); w.cond.Broadcast(); w.mu.Unlock() })
	defer stop()
	deadline := time.Now().Add(timeout)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		if w.err != nil {
			return nil, w.err
		}
		done := 0
		for _, r := range w.rev {
			if r > rev {
				done++
			}
		}
		if done == len(w.rev) {
			lat := make([]time.Duration, len(w.at))
			for i, at := range w.at {
				lat[i] = at.Sub(start)
			}
			return lat, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, errors.New("watchers: " + fmt.Sprint(len(w.rev)-done) + " did not receive the new key set in time")
		}
		w.cond.Wait()
	}
}

func (w *watchers) close() {
	for _, cc := range w.conns {
		cc.Close()
	}
	w.wg.Wait()
}
