// Package loadtest drives the real binaries (issuer, gateway, stub model)
// on loopback with a bounded, mixed load: valid tokens on healthy models,
// valid tokens on a model server that fails intermittently
// (internal/testkit/faultmodel's Flaky: 503s and connection resets), and forged,
// expired, wrong-instance and revoked tokens, across all three features,
// while the issuer rotates its keys. Afterwards it checks that every
// request got the outcome it should and that the gateway's goroutines and
// heap came back to their baseline. `airlock-bench loadtest` (cmd/airlock-bench)
// and `make loadtest` run it; its smoke test runs a few seconds of it. The
// cluster comes from internal/testkit/cluster.
package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// Config bounds one run. Zero fields take the defaults noted.
type Config struct {
	BinDir   string        // directory holding issuer, gateway and stubmodel (required)
	Duration time.Duration // length of the measured load (60 s)
	// RotateEvery is the key rotation period during the load (10 s, or a
	// third of a shorter Duration so that a short run still rotates).
	RotateEvery time.Duration
	Workers     int // concurrent client loops (8)
	// Settle is how long the gateway gets after the load to return to its
	// baseline goroutines and heap (20 s).
	Settle time.Duration
	// GoroutineMargin and HeapMargin are the allowed excess over the
	// baseline after the load (10 goroutines; 8 MiB).
	GoroutineMargin float64
	HeapMargin      float64
	Log             io.Writer // progress lines (io.Discard if nil)
}

func (c Config) withDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.RotateEvery <= 0 {
		c.RotateEvery = min(10*time.Second, c.Duration/3)
	}
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Settle <= 0 {
		c.Settle = 20 * time.Second
	}
	if c.GoroutineMargin <= 0 {
		c.GoroutineMargin = 10
	}
	if c.HeapMargin <= 0 {
		c.HeapMargin = 8 << 20
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	// Several goroutines report progress (the drivers, the rotator).
	c.Log = &syncWriter{w: c.Log}
	return c
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Kind is one class of request in the mix.
type Kind string

// The request mix, in the order of one round of a worker.
const (
	ValidHealthy  Kind = "valid, healthy model"
	ValidFlaky    Kind = "valid, flaky model"
	Forged        Kind = "forged signature"
	Expired       Kind = "expired"
	WrongInstance Kind = "wrong instance id"
	Revoked       Kind = "revoked"
)

// mix is one worker round: half the requests are valid on healthy models.
var mix = []Kind{ValidHealthy, ValidHealthy, Forged, ValidHealthy, ValidFlaky, Expired, ValidHealthy, WrongInstance, ValidHealthy, Revoked}

// Kinds lists the request kinds in report order.
var Kinds = []Kind{ValidHealthy, ValidFlaky, Forged, Expired, WrongInstance, Revoked}

// Features: code_generations is bound to the flaky model; the other two
// to the healthy stub (cluster.StubModel). Invalid tokens are spread across all three.
const flakyFeature = "code_generations"

var healthyFeatures = []string{"code_completions", "duo_chat"}
var allFeatures = []string{"code_completions", "duo_chat", "code_generations"}

// Tally counts outcomes of one kind.
type Tally struct {
	Requests   int
	OK         int
	Refused    int            // refused with the expected code and message
	Failed     int            // any other outcome: a defect
	Codes      map[string]int // every outcome by gRPC code
	Latencies  []time.Duration
	Unexpected []string // the first few failures, for the report
}

// Report is the result of a run.
type Report struct {
	Duration        time.Duration
	Rotations       int
	Tallies         map[Kind]*Tally
	Baseline, After GatewayRuntime
	Peak            GatewayRuntime
	Problems        []string // empty when the run passed
}

// OK reports whether the run met every expectation.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Run starts the cluster in a temporary directory, loads it and tears it
// down. The returned error is for a run that could not be carried out; a
// run that found defects returns a Report whose Problems say which.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.BinDir == "" {
		return nil, errors.New("loadtest: BinDir is required")
	}
	dir, err := os.MkdirTemp("", "airlock-load")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	c, err := cluster.Start(ctx, cluster.Config{BinDir: cfg.BinDir, WorkDir: dir, StubTokens: stubTokens, StubDelay: time.Millisecond,
		FaultModel: &faultmodel.Config{Tokens: stubTokens}, GatewayHTTP: true,
		GatewayArgs: []string{
			"--leeway", "0s", // tokens minted with a 1 s lifetime expire at once
			"--user-requests-per-minute", "0", "--user-concurrent-streams", "0",
			// Thousands of deliberately bad tokens from one address: the test
			// checks each refusal's wording, not the per-address bound.
			"--auth-failures-per-minute", "0",
			"--upstream-connect-timeout", "2s", "--upstream-first-byte-timeout", "5s",
			"--upstream-idle-timeout", "5s", "--upstream-total-timeout", "30s",
			"--log-level", "warn",
			// The leak check reads heap in use, which holds garbage until a
			// collection. With the heap floor, a gateway idle after the load
			// allocates too little to collect for minutes, so the check
			// would weigh garbage, not leaks: Go's own pacing here.
			"--gc-heap-floor-bytes", "0",
		}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	fmt.Fprintf(cfg.Log, "cluster up: gateway %s, issuer %s, flaky model %s\n", c.GatewayGRPC, c.IssuerGRPC, c.Faults.Addr())

	l, err := newLoad(ctx, c)
	if err != nil {
		return nil, err
	}
	return l.run(ctx, cfg)
}

// stubTokens is the answer length of both the stub and the flaky model.
const stubTokens = 8

// load holds the tokens and clients of one run.
type load struct {
	c       *cluster.Cluster
	tokens  issuerv1.TokenServiceClient
	keys    issuerv1.KeyServiceClient
	admin   context.Context
	demo    context.Context
	answer  string
	mu      sync.Mutex
	valid   []map[string]string // grows with tokens minted after each rotation
	invalid map[Kind][]map[string]string
}

// newLoad routes the flaky feature to the fault model (the cluster bound
// every feature to the stub) and fills the token pools.
func newLoad(ctx context.Context, c *cluster.Cluster) (*load, error) {
	l := &load{c: c, tokens: issuerv1.NewTokenServiceClient(c.IssuerConn()), keys: issuerv1.NewKeyServiceClient(c.IssuerConn()),
		answer: stubmodel.New(stubmodel.Config{}).Text(stubTokens), invalid: map[Kind][]map[string]string{}}
	var err error
	if l.admin, err = c.AsUser(ctx, "admin"); err != nil {
		return nil, err
	}
	if l.demo, err = c.AsUser(ctx, "demo"); err != nil {
		return nil, err
	}
	if err := c.CreateModel(ctx, cluster.LoopbackModel("flaky", c.Faults.URL(faultmodel.Flaky), "flaky")); err != nil {
		return nil, err
	}
	if err := c.Bind(ctx, flakyFeature, "flaky"); err != nil {
		return nil, err
	}

	// Token pools.
	for i := 0; i < 8; i++ {
		md, _, err := l.mint(ctx, 0)
		if err != nil {
			return nil, err
		}
		l.valid = append(l.valid, md)
	}
	for i := 0; i < 8; i++ {
		md, jti, err := l.mint(ctx, 0)
		if err != nil {
			return nil, err
		}
		if _, err := l.tokens.RevokeToken(l.demo, &issuerv1.RevokeTokenRequest{Jti: jti}); err != nil {
			return nil, fmt.Errorf("RevokeToken: %w", err)
		}
		l.invalid[Revoked] = append(l.invalid[Revoked], md)
		md, _, err = l.mint(ctx, time.Second)
		if err != nil {
			return nil, err
		}
		l.invalid[Expired] = append(l.invalid[Expired], md)
		wrong := clone(l.valid[i])
		wrong["x-gitlab-instance-id"] = uuid.NewString()
		l.invalid[WrongInstance] = append(l.invalid[WrongInstance], wrong)
		forged, err := forge(l.valid[i], c.IssuerURL())
		if err != nil {
			return nil, err
		}
		l.invalid[Forged] = append(l.invalid[Forged], forged)
	}
	// Let the 1 s tokens expire (the gateway runs with no leeway) and the
	// configuration reach the gateway.
	time.Sleep(1200 * time.Millisecond)
	return l, nil
}

// mint returns the metadata a client sends with a fresh token of the demo
// user, and its jti.
func (l *load) mint(ctx context.Context, ttl time.Duration) (map[string]string, string, error) {
	tok, err := l.c.Mint(ctx, "demo", nil, ttl)
	if err != nil {
		return nil, "", err
	}
	return cluster.Metadata(tok), tok.ID, nil
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// forge signs claims like the issuer's with a key the issuer never
// published.
func forge(md map[string]string, issuer string) (map[string]string, error) {
	raw, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	if err := jwk.AssignKeyID(key); err != nil {
		return nil, err
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().JwtID(uuid.NewString()).Issuer(issuer).Subject(md["x-gitlab-instance-id"]).
		Audience([]string{"gitlab-ai-gateway"}).IssuedAt(now).NotBefore(now.Add(-5*time.Second)).Expiration(now.Add(time.Hour)).
		Claim("gitlab_realm", "self-managed").Claim("scopes", allFeatures).Build()
	if err != nil {
		return nil, err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256, key))
	if err != nil {
		return nil, err
	}
	out := clone(md)
	out["authorization"] = "Bearer " + string(signed)
	return out, nil
}

// outcome is one finished request.
type outcome struct {
	kind    Kind
	took    time.Duration
	code    codes.Code
	ok      bool // the outcome is the expected one
	refused bool
	detail  string
}

func (l *load) run(ctx context.Context, cfg Config) (*Report, error) {
	rep := &Report{Tallies: map[Kind]*Tally{}}
	for _, k := range Kinds {
		rep.Tallies[k] = &Tally{Codes: map[string]int{}}
	}
	// Warm up with the same mix so the baseline includes steady-state
	// allocations (connection pools, caches), then let it go idle.
	if _, err := l.drive(ctx, cfg.Workers, 2*time.Second, nil); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	var err error
	if rep.Baseline, err = l.runtime(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Log, "baseline: %.0f goroutines, heap in use %.1f MiB\n", rep.Baseline.Goroutines, rep.Baseline.HeapInuse/(1<<20))

	// Rotations and resource sampling run beside the load.
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	var side sync.WaitGroup
	var sideErr error
	side.Add(2)
	go func() {
		defer side.Done()
		t := time.NewTicker(cfg.RotateEvery)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
			}
			if _, err := l.keys.RotateKeys(l.admin, &issuerv1.RotateKeysRequest{}); err != nil {
				sideErr = fmt.Errorf("RotateKeys: %w", err)
				return
			}
			rep.Rotations++
			// Tokens from the newly active key join the pool at once.
			md, _, err := l.mint(loadCtx, 0)
			if err != nil {
				if loadCtx.Err() == nil { // else the run ended during the call
					sideErr = err
				}
				return
			}
			l.mu.Lock()
			l.valid = append(l.valid, md)
			l.mu.Unlock()
			fmt.Fprintf(cfg.Log, "rotation %d\n", rep.Rotations)
		}
	}()
	go func() {
		defer side.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-t.C:
			}
			if rt, err := l.runtime(loadCtx); err == nil {
				rep.Peak.Goroutines = max(rep.Peak.Goroutines, rt.Goroutines)
				rep.Peak.HeapInuse = max(rep.Peak.HeapInuse, rt.HeapInuse)
				rep.Peak.ResidentSize = max(rep.Peak.ResidentSize, rt.ResidentSize)
			}
		}
	}()
	start := time.Now()
	outcomes, err := l.drive(loadCtx, cfg.Workers, cfg.Duration, cfg.Log)
	rep.Duration = time.Since(start)
	stop()
	side.Wait()
	if err != nil {
		return nil, err
	}
	if sideErr != nil {
		return nil, sideErr
	}
	for _, o := range outcomes {
		t := rep.Tallies[o.kind]
		t.Requests++
		t.Codes[o.code.String()]++
		switch {
		case !o.ok:
			t.Failed++
			if len(t.Unexpected) < 5 {
				t.Unexpected = append(t.Unexpected, o.detail)
			}
		case o.refused:
			t.Refused++
		default:
			t.OK++
			t.Latencies = append(t.Latencies, o.took)
		}
	}

	// Back to baseline once the load is gone?
	deadline := time.Now().Add(cfg.Settle)
	for {
		if rep.After, err = l.runtime(ctx); err != nil {
			return nil, err
		}
		if rep.After.Goroutines <= rep.Baseline.Goroutines+cfg.GoroutineMargin && rep.After.HeapInuse <= rep.Baseline.HeapInuse+cfg.HeapMargin {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	rep.check(cfg)
	return rep, nil
}

// check fills Problems.
func (r *Report) check(cfg Config) {
	for _, k := range Kinds {
		t := r.Tallies[k]
		if t.Requests == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: no requests", k))
		}
		if t.Failed > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %d of %d requests had the wrong outcome (first: %s)", k, t.Failed, t.Requests, strings.Join(t.Unexpected, "; ")))
		}
	}
	if r.Rotations == 0 {
		r.Problems = append(r.Problems, "no key rotation happened during the load")
	}
	if r.After.Goroutines > r.Baseline.Goroutines+cfg.GoroutineMargin {
		r.Problems = append(r.Problems, fmt.Sprintf("gateway goroutines %.0f after the load, baseline %.0f (margin %.0f)", r.After.Goroutines, r.Baseline.Goroutines, cfg.GoroutineMargin))
	}
	if r.After.HeapInuse > r.Baseline.HeapInuse+cfg.HeapMargin {
		r.Problems = append(r.Problems, fmt.Sprintf("gateway heap in use %.1f MiB after the load, baseline %.1f MiB (margin %.0f MiB)",
			r.After.HeapInuse/(1<<20), r.Baseline.HeapInuse/(1<<20), cfg.HeapMargin/(1<<20)))
	}
}

// drive runs workers for d (or until ctx ends) and returns every outcome.
func (l *load) drive(ctx context.Context, workers int, d time.Duration, log io.Writer) ([]outcome, error) {
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var (
		mu  sync.Mutex
		all []outcome
		wg  sync.WaitGroup
	)
	// A call cut short by the end of the run is not a result. The status
	// can beat ctx.Err(): gRPC propagates the deadline to the server, whose
	// DeadlineExceeded may arrive before the client's own timer fires.
	cutShort := func(o outcome) bool {
		return (o.code == codes.Canceled || o.code == codes.DeadlineExceeded) && (ctx.Err() != nil || time.Until(end) < time.Second)
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []outcome
			for i := w; ctx.Err() == nil && time.Now().Before(end); i++ {
				o := l.one(ctx, mix[i%len(mix)], i)
				if cutShort(o) {
					break
				}
				mine = append(mine, o)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if log != nil {
		fmt.Fprintf(log, "%d requests in %v\n", len(all), d)
	}
	return all, nil
}

// one sends one request of kind k and judges the outcome.
func (l *load) one(ctx context.Context, k Kind, i int) outcome {
	var md map[string]string
	var feature string
	switch k {
	case ValidHealthy:
		l.mu.Lock()
		md = l.valid[i%len(l.valid)]
		l.mu.Unlock()
		feature = healthyFeatures[i%len(healthyFeatures)]
	case ValidFlaky:
		l.mu.Lock()
		md = l.valid[i%len(l.valid)]
		l.mu.Unlock()
		feature = flakyFeature
	default:
		pool := l.invalid[k]
		md, feature = pool[i%len(pool)], allFeatures[i%len(allFeatures)]
	}
	start := time.Now()
	text, err := l.stream(cluster.Outgoing(ctx, md), feature)
	o := outcome{kind: k, took: time.Since(start), code: status.Code(err)}
	st, _ := status.FromError(err)
	switch k {
	case ValidHealthy:
		o.ok = err == nil && text == l.answer
	case ValidFlaky:
		// The flaky server's 503s are retried once by the gateway (the
		// retry may meet another 503 under concurrency); a reset after text
		// has been relayed cannot be retried. Both are Unavailable.
		o.ok = err == nil && text == faultmodel.Answer(8) ||
			st.Code() == codes.Unavailable && (st.Message() == "model server unavailable: connection to the model server lost mid-stream" ||
				st.Message() == "model server unavailable: "+faultmodel.OverloadedMessage)
		o.refused = err != nil
	case WrongInstance:
		o.ok = st.Code() == codes.Unauthenticated && st.Message() == "Header mismatch 'X-Gitlab-Instance-Id'"
		o.refused = true
	default:
		o.ok = st.Code() == codes.Unauthenticated && st.Message() == "Forbidden by auth provider"
		o.refused = true
	}
	if !o.ok {
		o.detail = fmt.Sprintf("%s on %s: %v %q (text %d bytes)", k, feature, st.Code(), st.Message(), len(text))
	}
	return o
}

func (l *load) stream(ctx context.Context, feature string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	text, _, err := l.c.Chat(ctx, feature)
	return text, err
}

// GatewayRuntime is what the gateway's /metrics says about its own
// resources.
type GatewayRuntime struct {
	Goroutines   float64
	HeapInuse    float64
	ResidentSize float64
}

func (l *load) runtime(ctx context.Context) (GatewayRuntime, error) {
	page, err := l.c.GatewayMetrics(ctx)
	if err != nil {
		return GatewayRuntime{}, err
	}
	return parseRuntime(page)
}

// parseRuntime reads GatewayRuntime from a /metrics page; every series
// must be present.
func parseRuntime(page []byte) (GatewayRuntime, error) {
	var rt GatewayRuntime
	for _, m := range []struct {
		name string
		dst  *float64
	}{{"go_goroutines", &rt.Goroutines}, {"go_memstats_heap_inuse_bytes", &rt.HeapInuse}, {"process_resident_memory_bytes", &rt.ResidentSize}} {
		v, ok := cluster.Sample(page, m.name)
		if !ok {
			return GatewayRuntime{}, fmt.Errorf("gateway /metrics: %s missing", m.name)
		}
		*m.dst = v
	}
	return rt, nil
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// Markdown renders the report as a table for docs/LOADTEST.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Load: %v, %d key rotations.\n\n", r.Duration.Round(time.Millisecond), r.Rotations)
	b.WriteString("| requests | kind | ok | refused as expected | wrong outcome | codes | p50 / p99 (ok) |\n|---:|---|---:|---:|---:|---|---|\n")
	total := 0
	for _, k := range Kinds {
		t := r.Tallies[k]
		total += t.Requests
		var cs []string
		for c, n := range t.Codes {
			cs = append(cs, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(cs)
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %s | %v / %v |\n", t.Requests, k, t.OK, t.Refused, t.Failed, strings.Join(cs, ", "),
			percentile(t.Latencies, 50).Round(10*time.Microsecond), percentile(t.Latencies, 99).Round(10*time.Microsecond))
	}
	fmt.Fprintf(&b, "\nTotal %d requests (%.0f/s).\n\n", total, float64(total)/r.Duration.Seconds())
	b.WriteString("| gateway | goroutines | heap in use | RSS |\n|---|---:|---:|---:|\n")
	for _, row := range []struct {
		name string
		rt   GatewayRuntime
	}{{"baseline (after warm-up)", r.Baseline}, {"peak during load", r.Peak}, {"after load", r.After}} {
		fmt.Fprintf(&b, "| %s | %.0f | %.1f MiB | %.1f MiB |\n", row.name, row.rt.Goroutines, row.rt.HeapInuse/(1<<20), row.rt.ResidentSize/(1<<20))
	}
	if r.OK() {
		b.WriteString("\nResult: PASS\n")
	} else {
		b.WriteString("\nResult: FAIL\n")
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.String()
}
