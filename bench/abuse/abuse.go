// Package abuse runs abusive clients against the real binaries on loopback
// and measures what each abuse costs the services (CPU, memory, log bytes,
// goroutines) and whether a legitimate user in parallel keeps its latency.
//
// Every abuse runs for a bounded time (Config.Duration) against one fresh
// cluster, one after the other, after an idle run that sets the legitimate
// user's baseline latency. The abuser and the legitimate user are two
// different issuer users with their own tokens, so per-user limits apply to
// the abuser alone, as they would in production.
package abuse

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// Config configures Run.
type Config struct {
	// BinDir holds the issuer, gateway and stubmodel binaries.
	BinDir string
	// WorkDir receives one directory per run (data and logs).
	WorkDir string
	// Duration of each abuse (and of the idle run); default 3 s.
	Duration time.Duration
	// Workers is how many concurrent abusive callers (default 8).
	Workers int
	// Only, when set, runs only the abuses with these names.
	Only []string
}

// Result is what one abuse cost.
type Result struct {
	Name  string
	Calls int64
	// Codes counts the abuser's calls by final status.
	Codes map[codes.Code]int64
	// Gateway and issuer CPU time spent during the run, their resident
	// memory at its end, and how many bytes their logs grew.
	GatewayCPU, IssuerCPU           time.Duration
	GatewayRSS, IssuerRSS           int64
	GatewayLogBytes, IssuerLogBytes int64
	// GatewayGoroutines is go_goroutines at the end of the run.
	GatewayGoroutines float64
	// LongestLogLine is the longest line either service logged.
	LongestLogLine int
	// Legit is the legitimate user's latency during the run.
	LegitP50, LegitP99 time.Duration
	LegitCalls         int
	LegitErrors        int
}

// abuse is one abusive client: call is run in a loop by each worker until
// ctx ends and returns the call's error (nil for success).
type abuse struct {
	name string
	// setup runs once before the workers (it may open connections).
	setup func(ctx context.Context, e *env) error
	call  func(ctx context.Context, e *env, worker int) error
}

// env is what the abuses share for one run.
type env struct {
	c         *cluster.Cluster
	gw        gatewayv1.CompletionServiceClient
	tokens    issuerv1.TokenServiceClient
	abuserMD  metadata.MD // the abuser's gateway token metadata
	abuserPAT string
	legitMD   metadata.MD
	held      []net.Conn // connections the slow-header abuse holds
	mu        sync.Mutex
}

func (e *env) closeHeld() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.held {
		_ = c.Close()
	}
	e.held = nil
}

var completion = &gatewayv1.CompleteRequest{Feature: "duo_chat", Messages: []*gatewayv1.Message{{Role: "user", Content: "hello"}}}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Built once, so the abusive client spends its CPU sending, not building.
var (
	big          = strings.Repeat("x", 1<<20)
	manyFeatures = &issuerv1.MintTokenRequest{Features: func() []string {
		fs := make([]string, 200_000)
		for i := range fs {
			fs[i] = "duo_chat"
		}
		return fs
	}()}
)

// abuses are the scripted abuses, in the order Run runs them.
var abuses = []abuse{
	{name: "idle (legitimate user only)"},
	{name: "invalid-request flood (authenticated)", call: func(ctx context.Context, e *env, _ int) error {
		_, err := e.gw.Complete(metadata.NewOutgoingContext(ctx, e.abuserMD), &gatewayv1.CompleteRequest{Feature: "no_such_feature"})
		return err
	}},
	{name: "header spraying (new x-gitlab-global-user-id per call)", call: func(ctx context.Context, e *env, _ int) error {
		md := e.abuserMD.Copy()
		md.Set("x-gitlab-global-user-id", randomID())
		_, err := e.gw.Complete(metadata.NewOutgoingContext(ctx, md), completion)
		return err
	}},
	{name: "unauthenticated flood (garbage tokens)", call: func(ctx context.Context, e *env, _ int) error {
		md := e.abuserMD.Copy()
		md.Set("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9."+randomID()+".c2ln")
		_, err := e.gw.Complete(metadata.NewOutgoingContext(ctx, md), completion)
		return err
	}},
	{name: "oversized fields (1 MiB feature and jti)", call: func(ctx context.Context, e *env, w int) error {
		if w%2 == 0 {
			_, err := e.gw.Complete(metadata.NewOutgoingContext(ctx, e.abuserMD), &gatewayv1.CompleteRequest{Feature: big})
			return err
		}
		actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.abuserPAT)
		_, err := e.tokens.RevokeToken(actx, &issuerv1.RevokeTokenRequest{Jti: big})
		return err
	}},
	{name: "200000 repeated feature names per MintToken", call: func(ctx context.Context, e *env, _ int) error {
		actx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.abuserPAT)
		_, err := e.tokens.MintToken(actx, manyFeatures)
		return err
	}},
	{name: "slow headers (connections that send a partial preface and stall)", call: func(ctx context.Context, e *env, _ int) error {
		conn, err := net.Dial("tcp", e.c.GatewayGRPC)
		if err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		// Half of the HTTP/2 client preface, then nothing.
		if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n")); err != nil {
			_ = conn.Close()
			return status.Error(codes.Unavailable, err.Error())
		}
		e.mu.Lock()
		e.held = append(e.held, conn)
		e.mu.Unlock()
		select { // one new connection per worker every 10 ms
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
		return nil
	}},
}

// Run runs every abuse (or cfg.Only) and returns one Result each, the idle
// run first.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	var out []Result
	for i, a := range abuses {
		if a.call != nil && len(cfg.Only) > 0 && !slices.Contains(cfg.Only, a.name) {
			continue
		}
		r, err := runOne(ctx, cfg, filepath.Join(cfg.WorkDir, fmt.Sprintf("run-%d", i)), a)
		if err != nil {
			return out, fmt.Errorf("%s: %w", a.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runOne(ctx context.Context, cfg Config, dir string, a abuse) (Result, error) {
	c, err := cluster.Start(ctx, cluster.Config{BinDir: cfg.BinDir, WorkDir: dir, StubTokens: 4, StubDelay: time.Millisecond, GatewayHTTP: true,
		// Production log level, not the suite's warn.
		IssuerArgs: []string{"--log-level", "info"}, GatewayArgs: []string{"--log-level", "info"}})
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	e, err := newEnv(ctx, c)
	if err != nil {
		return Result{}, err
	}
	defer e.closeHeld()
	if a.setup != nil {
		if err := a.setup(ctx, e); err != nil {
			return Result{}, err
		}
	}
	// The legitimate user was there before the abuse: its connection is
	// open and its token verified.
	wctx, wcancel := context.WithTimeout(metadata.NewOutgoingContext(ctx, e.legitMD), 10*time.Second)
	_, err = e.gw.Complete(wctx, completion)
	wcancel()
	if err != nil {
		return Result{}, fmt.Errorf("legitimate warm-up call: %w", err)
	}
	gw0, is0 := usage(c.Gateway), usage(c.Issuer)
	gl0, il0 := size(filepath.Join(dir, "gateway.log")), size(filepath.Join(dir, "issuer.log"))

	rctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	r := Result{Name: a.name, Codes: map[codes.Code]int64{}}
	var calls atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	if a.call != nil {
		for w := range cfg.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					err := a.call(rctx, e, w)
					if dl, _ := rctx.Deadline(); rctx.Err() != nil ||
						(status.Code(err) == codes.DeadlineExceeded && time.Until(dl) < 100*time.Millisecond) {
						// A call cut short by the end of the run is not a
						// result (the server's copy of the deadline may fire
						// first).
						return
					}
					calls.Add(1)
					mu.Lock()
					r.Codes[status.Code(err)]++
					mu.Unlock()
				}
			}()
		}
	}
	lat, legitErrs := legit(rctx, e)
	wg.Wait()
	r.Calls = calls.Load()

	gw1, is1 := usage(c.Gateway), usage(c.Issuer)
	r.GatewayCPU, r.IssuerCPU = gw1.CPU-gw0.CPU, is1.CPU-is0.CPU
	r.GatewayRSS, r.IssuerRSS = gw1.RSS, is1.RSS
	r.GatewayLogBytes = size(filepath.Join(dir, "gateway.log")) - gl0
	r.IssuerLogBytes = size(filepath.Join(dir, "issuer.log")) - il0
	if page, err := c.GatewayMetrics(ctx); err == nil {
		r.GatewayGoroutines, _ = cluster.Sample(page, "go_goroutines")
	}
	r.LongestLogLine = max(longestLine(filepath.Join(dir, "gateway.log")), longestLine(filepath.Join(dir, "issuer.log")))
	r.LegitCalls, r.LegitErrors = len(lat), legitErrs
	if len(lat) > 0 {
		slices.Sort(lat)
		r.LegitP50, r.LegitP99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r, nil
}

// legit is the legitimate user: one Complete every 20 ms until ctx ends.
func legit(ctx context.Context, e *env) ([]time.Duration, int) {
	var lat []time.Duration
	errs := 0
	for ctx.Err() == nil {
		start := time.Now()
		// Its own deadline, detached from the run's end, so the last call
		// is measured whole.
		cctx, cancel := context.WithTimeout(metadata.NewOutgoingContext(context.Background(), e.legitMD), 10*time.Second)
		_, err := e.gw.Complete(cctx, completion)
		cancel()
		if err != nil {
			errs++
		} else {
			lat = append(lat, time.Since(start))
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return lat, errs
}

func newEnv(ctx context.Context, c *cluster.Cluster) (*env, error) {
	icc, err := cluster.Dial(c.IssuerGRPC)
	if err != nil {
		return nil, err
	}
	gcc, err := cluster.Dial(c.GatewayGRPC, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		icc.Close()
		return nil, err
	}
	go func() { <-ctx.Done(); icc.Close(); gcc.Close() }()
	e := &env{c: c, gw: gatewayv1.NewCompletionServiceClient(gcc), tokens: issuerv1.NewTokenServiceClient(icc)}
	abuser, err := c.Mint(ctx, "demo", nil, 0)
	if err != nil {
		return nil, err
	}
	e.abuserMD = metadata.New(cluster.Metadata(abuser))
	if e.abuserPAT, err = c.PAT("demo"); err != nil {
		return nil, err
	}
	// A second user for the legitimate traffic.
	actx, err := c.AsUser(ctx, "admin")
	if err != nil {
		return nil, err
	}
	users := issuerv1.NewUserServiceClient(icc)
	if _, err := users.CreateUser(actx, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: "legit", Role: issuerv1.Role_ROLE_USER,
		EntitledFeatures: []string{"duo_chat"}}}); err != nil {
		return nil, fmt.Errorf("CreateUser: %w", err)
	}
	pat, err := users.CreatePersonalAccessToken(actx, &issuerv1.CreatePersonalAccessTokenRequest{Username: "legit",
		ExpireTime: timestamppb.New(time.Now().Add(24 * time.Hour))})
	if err != nil {
		return nil, fmt.Errorf("CreatePersonalAccessToken: %w", err)
	}
	lctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+pat.GetSecret())
	tok, err := e.tokens.MintToken(lctx, &issuerv1.MintTokenRequest{})
	if err != nil {
		return nil, fmt.Errorf("MintToken (legit): %w", err)
	}
	e.legitMD = metadata.New(tok.GetMetadata())
	return e, nil
}

func usage(p *cluster.Proc) cluster.Usage {
	u, _ := p.Usage()
	return u
}

func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func longestLine(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	longest := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		longest = max(longest, len(line))
	}
	return longest
}

// Markdown renders results as a table.
func Markdown(rs []Result) string {
	var b strings.Builder
	b.WriteString("| abuse | abuser calls | codes | gateway CPU | issuer CPU | gateway RSS | issuer RSS | gateway log | issuer log | longest log line | gateway goroutines | legit p50 / p99 | legit errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		var cs []string
		for c, n := range r.Codes {
			cs = append(cs, fmt.Sprintf("%s %d", c, n))
		}
		slices.Sort(cs)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1f MiB | %.1f MiB | %d B | %d B | %d B | %.0f | %s / %s | %d of %d |\n",
			r.Name, r.Calls, strings.Join(cs, ", "), r.GatewayCPU.Round(time.Millisecond), r.IssuerCPU.Round(time.Millisecond),
			float64(r.GatewayRSS)/(1<<20), float64(r.IssuerRSS)/(1<<20), r.GatewayLogBytes, r.IssuerLogBytes, r.LongestLogLine,
			r.GatewayGoroutines, r.LegitP50.Round(10*time.Microsecond), r.LegitP99.Round(10*time.Microsecond), r.LegitErrors, r.LegitCalls+r.LegitErrors)
	}
	return b.String()
}
