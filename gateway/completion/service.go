// Package completion implements the gateway's CompletionService: it checks
// the request, picks the model the administrator bound to the feature, calls
// that model's adapter, relays each text delta as it arrives, and maps every
// failure to one precise gRPC status (in status.go, the only place that does).
package completion

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/egress"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Router returns the models to try for a feature (*catalog.Catalog).
type Router interface {
	Route(f feature.Feature) ([]catalog.Target, error)
}

// Authorizer returns nil if the caller in ctx may use f, else a status
// error (PermissionDenied). auth.Authorize satisfies it.
type Authorizer func(ctx context.Context, f feature.Feature) error

// Caller names the authenticated caller in logs and per-user limits; the
// gateway passes a function that reads the verified identity from ctx.
type Caller func(ctx context.Context) (user, jti string)

// Config configures the service.
type Config struct {
	Router    Router
	Authorize Authorizer
	Caller    Caller
	// Adapters maps a provider name to its constructor (providers.Registry()).
	Adapters map[string]adapter.Constructor
	Timeouts adapter.Timeouts
	Limits   Limits
	// Attempts per model before failing over (default 2: one retry);
	// retries happen only before any text reached the caller, and only
	// while the call's time-to-first-byte budget (Timeouts.FirstByte,
	// shared by every attempt and the fallback) lasts.
	Attempts int
	// RetryBackoff is the first retry's pause (default 100 ms), doubled
	// after each retry, with jitter.
	RetryBackoff time.Duration
	Logger       zerolog.Logger
	Observer     Observer
	// WrapTransport, if set, wraps each model's HTTP transport (the gateway
	// adds tracing there when an OTLP endpoint is configured; unwrapped
	// otherwise, since each wrapper costs per request and per open stream).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Observer receives per-call measurements (metrics). Nil methods are fine.
type Observer interface {
	// Upstream reports one finished upstream attempt.
	Upstream(model, provider string, ttft, total time.Duration, chunks int, err error)
}

// maxRetryAfterWait is the longest Retry-After the gateway waits out
// before retrying the same model; longer hints go to the fallback at once.
const maxRetryAfterWait = 2 * time.Second

// Service implements gatewayv1.CompletionServiceServer.
type Service struct {
	gatewayv1.UnsafeCompletionServiceServer

	cfg      Config
	limiter  *limiter
	mu       sync.Mutex
	adapters map[string]adapter.Adapter // by provider + trusted networks
}

// New returns the service. It fails if a required dependency is missing.
func New(cfg Config) (*Service, error) {
	if cfg.Router == nil || cfg.Authorize == nil || cfg.Adapters == nil {
		return nil, errors.New("completion: Router, Authorize and Adapters are required")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 2
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = 100 * time.Millisecond
	}
	if cfg.Caller == nil {
		cfg.Caller = func(context.Context) (string, string) { return "", "" }
	}
	cfg.Limits = cfg.Limits.withDefaults()
	return &Service{cfg: cfg, limiter: newLimiter(cfg.Limits), adapters: map[string]adapter.Adapter{}}, nil
}

// Register registers the service on s.
func (s *Service) Register(r grpc.ServiceRegistrar) { gatewayv1.RegisterCompletionServiceServer(r, s) }

// StreamCompletion implements the streaming RPC. Deltas go through a relay
// (see relay.go) so a caller that stops reading cannot hold the stream.
func (s *Service) StreamCompletion(req *gatewayv1.StreamCompletionRequest, stream gatewayv1.CompletionService_StreamCompletionServer) error {
	in := input{feature: req.GetFeature(), messages: req.GetMessages(), code: req.GetCodeContext(), options: req.GetOptions(),
		tools: req.GetTools(), toolChoice: req.GetToolChoice(), parallelToolCalls: req.ParallelToolCalls}
	ctx := stream.Context()
	msg := &gatewayv1.StreamCompletionResponse{} // reused: Send encodes before it returns
	r := newRelay(func(d adapter.Delta) error {
		msg.Text = d.Text
		msg.ToolCalls = msg.ToolCalls[:0]
		for _, c := range d.ToolCalls {
			msg.ToolCalls = append(msg.ToolCalls, &gatewayv1.ToolCallDelta{Index: uint32(c.Index), Id: c.ID, Name: c.Name, Arguments: c.Arguments}) //nolint:gosec // G115: the core bounds Index to [0, 128)
		}
		return stream.Send(msg)
	}, s.cfg.Limits.MaxBufferedBytes, s.cfg.Limits.ClientSendTimeout)
	r.inline = inlineSendBytes
	done, err := s.serve(ctx, in, func(d adapter.Delta) error { return r.emit(ctx, d) })
	// Deliver what was queued, also before an error status: text already
	// produced stays delivered.
	if ferr := r.finish(ctx); ferr != nil && err == nil {
		err = toStatus(ferr)
	}
	if err != nil {
		return err
	}
	return stream.Send(&gatewayv1.StreamCompletionResponse{Done: done})
}

// Complete implements the unary RPC by aggregating the same stream.
func (s *Service) Complete(ctx context.Context, req *gatewayv1.CompleteRequest) (*gatewayv1.CompleteResponse, error) {
	in := input{feature: req.GetFeature(), messages: req.GetMessages(), code: req.GetCodeContext(), options: req.GetOptions(),
		tools: req.GetTools(), toolChoice: req.GetToolChoice(), parallelToolCalls: req.ParallelToolCalls}
	var a Answer
	done, err := s.serve(ctx, in, a.Add)
	if err != nil {
		return nil, err
	}
	return &gatewayv1.CompleteResponse{Text: a.Text(), Done: done, ToolCalls: a.ToolCalls()}, nil
}

type input struct {
	feature  string
	messages []*gatewayv1.Message
	code     *gatewayv1.CodeContext
	options  *gatewayv1.GenerationOptions
	targets  []catalog.Target // Input.Targets

	tools             []*gatewayv1.Tool
	toolChoice        *gatewayv1.ToolChoice
	parallelToolCalls *bool
}

// serve runs one completion: validate, authorize, limit, route, stream.
// It returns the closing message or a status error.
func (s *Service) serve(ctx context.Context, in input, emit func(adapter.Delta) error) (*gatewayv1.CompletionDone, error) {
	// Every authenticated call counts toward its user's limits, before any
	// check of the request: a flood of invalid requests is throttled like
	// any other.
	user, jti := s.cfg.Caller(ctx)
	lf := &callFields{user: user, jti: jti}
	defer lf.addTo(ctx)
	release, err := s.limiter.acquire(user)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := checkBounds(in); err != nil {
		return nil, err
	}
	f, err := feature.Parse(in.feature)
	if err != nil {
		return nil, invalid(err.Error())
	}
	lf.feature = f
	if err := s.cfg.Authorize(ctx, f); err != nil {
		return nil, err
	}
	req, err := s.buildRequest(f, in)
	if err != nil {
		return nil, err
	}

	targets := in.targets
	if len(targets) == 0 {
		if targets, err = s.cfg.Router.Route(f); err != nil {
			return nil, toStatus(err)
		}
	}
	// Tools go only to models that take them: fallbacks that cannot are
	// skipped; with none left the request is refused, naming the provider.
	if req.HasToolFields() {
		if targets, err = s.toolTargets(f, req, targets); err != nil {
			return nil, err
		}
	}
	// One time-to-first-byte budget for the whole call: retries and the
	// fallback share it, so a caller never waits longer than the timeout
	// for a model that does not answer.
	if d := s.cfg.Timeouts.FirstByte; d > 0 {
		ctx = adapter.WithFirstByteDeadline(ctx, time.Now().Add(d))
	}
	// sent counts deltas relayed (no retry or failover once it is > 0);
	// answerBytes bounds one answer whatever the model does with max_tokens.
	sent, answerBytes := 0, 0
	countingEmit := func(d adapter.Delta) error {
		if d.Empty() {
			return nil
		}
		n := len(d.Text)
		if d.ToolCalls != nil {
			m, err := answerToolCalls(req, d.ToolCalls)
			if err != nil {
				return err
			}
			n += m
		}
		if answerBytes += n; answerBytes > s.cfg.Limits.MaxAnswerBytes {
			return errAnswerTooLarge
		}
		sent++
		return emit(d)
	}
	var lastErr error
	for _, t := range targets {
		req.Model = t.Model
		res, err := s.callWithRetry(ctx, t, req, countingEmit, &sent, lf)
		if err == nil {
			return &gatewayv1.CompletionDone{FinishReason: finishReason(res.Finish), Usage: usage(res.Usage), Model: t.Model.Name}, nil
		}
		lastErr = err
		if sent > 0 || !failover(err) || ctx.Err() != nil || budgetSpent(ctx) {
			break
		}
		s.cfg.Logger.Warn().Str("model", t.Model.Name).Err(safeErr(err)).Msg("model failed before any text; failing over")
	}
	return nil, toStatus(lastErr)
}

// callFields are one completion's log fields. serve adds them to the call's
// log line once, when it returns: every logging.AddFields copies the
// call's whole field list, which cost more than the rest of the logging.
type callFields struct {
	user, jti string
	feature   feature.Feature // empty until the request's feature parsed
	// The last upstream attempt (model empty when none was made).
	model           string
	attempt, chunks int
	upstream, ttft  time.Duration
}

func (lf *callFields) attempted(model string, attempt int, total, ttft time.Duration, chunks int) {
	lf.model, lf.attempt, lf.upstream, lf.ttft, lf.chunks = model, attempt, total, ttft, chunks
}

func (lf *callFields) addTo(ctx context.Context) {
	f := make(logging.Fields, 0, 16)
	f = append(f, "user", lf.user, "jti", lf.jti)
	if lf.feature != "" {
		f = append(f, "feature", string(lf.feature))
	}
	if lf.model != "" {
		f = append(f, "model", lf.model, "attempt", lf.attempt, "upstream_ms", lf.upstream.Milliseconds(),
			"upstream_ttft_ms", lf.ttft.Milliseconds(), "chunks", lf.chunks)
	}
	logging.AddFields(ctx, f)
}

// callWithRetry tries one target up to Attempts times while nothing has been
// sent to the caller and the failure is transient.
func (s *Service) callWithRetry(ctx context.Context, t catalog.Target, req *adapter.Request, emit func(adapter.Delta) error, sent *int, lf *callFields) (adapter.Result, error) {
	ad, err := s.adapterFor(t)
	if err != nil {
		return adapter.Result{}, err
	}
	backoff := s.cfg.RetryBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		var ttft time.Duration
		chunks := 0
		res, err := ad.Stream(ctx, req, func(d adapter.Delta) error {
			if chunks == 0 {
				ttft = time.Since(start)
			}
			chunks++
			return emit(d)
		})
		total := time.Since(start)
		if s.cfg.Observer != nil {
			s.cfg.Observer.Upstream(t.Model.Name, t.Model.Provider, ttft, total, chunks, err)
		}
		lf.attempted(t.Model.Name, attempt, total, ttft, chunks)
		if err == nil || *sent > 0 || attempt >= s.cfg.Attempts || !retryable(err) || ctx.Err() != nil || budgetSpent(ctx) {
			return res, err
		}
		wait := backoff/2 + rand.N(backoff/2+1) //nolint:gosec // G404: retry jitter, not a secret
		if e, ok := adapter.AsError(err); ok && e.RetryAfter > 0 {
			// The model said when to come back: honour it, unless that is
			// longer than a caller should wait for a first token (fail over).
			if e.RetryAfter > maxRetryAfterWait {
				return res, err
			}
			wait = e.RetryAfter
		}
		if dl, ok := adapter.FirstByteDeadline(ctx); ok && time.Until(dl) < wait {
			return res, err // the pause alone would spend the budget
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(wait):
		}
		backoff *= 2
	}
}

// budgetSpent reports whether the call's time-to-first-byte budget is used
// up: no further attempt may start.
func budgetSpent(ctx context.Context) bool {
	dl, ok := adapter.FirstByteDeadline(ctx)
	return ok && !time.Now().Before(dl)
}

// adapterFor returns a cached adapter for the target's provider whose HTTP
// client dials only the target's trusted networks.
func (s *Service) adapterFor(t catalog.Target) (adapter.Adapter, error) {
	key := t.Model.Provider + "|" + strings.Join(t.Trusted, ",")
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.adapters[key]; ok {
		return a, nil
	}
	newAdapter, ok := s.cfg.Adapters[t.Model.Provider]
	if !ok {
		return nil, errUnknownProvider(t.Model.Provider)
	}
	guard, err := egress.New(t.Trusted, s.cfg.Timeouts.Connect, nil)
	if err != nil {
		return nil, err
	}
	a, err := newAdapter(adapter.Config{
		Transport:     s.wrapTransport(guard.Transport()),
		Timeouts:      s.cfg.Timeouts,
		MaxEventBytes: s.cfg.Limits.MaxEventBytes,
		MaxBodyBytes:  s.cfg.Limits.MaxBodyBytes,
	})
	if err != nil {
		return nil, err
	}
	if len(s.adapters) > 1024 { // configurations churn; never grow without bound
		clear(s.adapters)
	}
	s.adapters[key] = a
	return a, nil
}

func (s *Service) wrapTransport(t http.RoundTripper) http.RoundTripper {
	if s.cfg.WrapTransport == nil {
		return t
	}
	return s.cfg.WrapTransport(t)
}

func finishReason(f adapter.Finish) gatewayv1.FinishReason {
	switch f {
	case adapter.FinishStop:
		return gatewayv1.FinishReason_FINISH_REASON_STOP
	case adapter.FinishLength:
		return gatewayv1.FinishReason_FINISH_REASON_LENGTH
	case adapter.FinishToolCalls:
		return gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS
	case adapter.FinishContentFilter:
		return gatewayv1.FinishReason_FINISH_REASON_CONTENT_FILTER
	}
	return gatewayv1.FinishReason_FINISH_REASON_STOP
}

func usage(u *adapter.Usage) *gatewayv1.Usage {
	if u == nil {
		return nil
	}
	return &gatewayv1.Usage{PromptTokens: clampU32(u.PromptTokens), CompletionTokens: clampU32(u.CompletionTokens)}
}

func clampU32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if n > 1<<31 {
		return 1 << 31
	}
	return uint32(n)
}
