package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// Source returns a token to send with a call. Implementations must be safe
// for concurrent use.
type Source interface {
	// Token returns a token that is valid now. Errors are *Error values.
	Token(ctx context.Context) (*Token, error)
}

// Minter mints tokens; issuerv1.TokenServiceClient satisfies it. The
// connection behind it must carry the caller's personal access token, for
// example through PATCredentials.
type Minter interface {
	MintToken(ctx context.Context, in *issuerv1.MintTokenRequest, opts ...grpc.CallOption) (*issuerv1.MintTokenResponse, error)
}

// Refresh timing. A token is refreshed at a random point between
// refreshMin and refreshMax of its lifetime (jitter spreads a fleet's
// refreshes), and considered expired expiryMargin before its exp so it is
// not sent while it expires in flight.
const (
	refreshMin         = 0.75
	refreshMax         = 0.85
	maxExpiryMargin    = 10 * time.Second
	defaultMintTimeout = 10 * time.Second
	minRetryBackoff    = time.Second
	maxRetryBackoff    = time.Minute
)

// ErrClosed is returned (as a Canceled *Error) by Token after Close.
var ErrClosed = errors.New("client: token source closed")

// TokenSourceOption configures NewTokenSource.
type TokenSourceOption func(*TokenSource)

// WithFeatures asks for tokens for these features (code_completions,
// code_generations, duo_chat). Without it the issuer grants every feature
// the user is entitled to.
func WithFeatures(features ...string) TokenSourceOption {
	return func(s *TokenSource) { s.features = append([]string(nil), features...) }
}

// WithTTL asks for tokens living d; the issuer caps it. Zero means the
// issuer's default (1 h).
func WithTTL(d time.Duration) TokenSourceOption {
	return func(s *TokenSource) { s.ttl = d }
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) TokenSourceOption {
	return func(s *TokenSource) { s.now = now }
}

// WithMintTimeout bounds each MintToken call (default 10 s).
func WithMintTimeout(d time.Duration) TokenSourceOption {
	return func(s *TokenSource) { s.mintTimeout = d }
}

// TokenSource mints tokens with a Minter, caches the current one and
// refreshes it before it expires, in the spirit of oauth2.ReuseTokenSource
// but without ever blocking a caller while a usable token is cached:
//
//   - Cold (no token, or the cached one expired): Token waits for one mint
//     shared by every concurrent caller (single-flight) and returns its
//     result or error.
//   - Warm and past the jittered refresh point (75–85 % of the lifetime):
//     Token returns the cached token at once and starts one background mint.
//   - A failed background refresh keeps the cached token until it expires,
//     retrying with backoff (1 s doubling to 1 min, jittered); once it has
//     expired Token mints again, and while backing off returns the last
//     error without calling the issuer.
//
// Close stops background work. The zero value is not usable; call
// NewTokenSource.
type TokenSource struct {
	minter      Minter
	features    []string
	ttl         time.Duration
	now         func() time.Time
	jitter      func() float64 // in [0, 1)
	mintTimeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	tok       *Token
	refreshAt time.Time
	expireAt  time.Time // tok.Expiry less the margin
	retryAt   time.Time // earliest next background attempt after a failure
	failures  int
	lastErr   error // the last mint's error, until one succeeds
	inflight  *mintCall
	closed    bool
}

// mintCall is one in-flight mint that callers may wait on.
type mintCall struct {
	done chan struct{}
	tok  *Token
	err  error
}

// NewTokenSource returns a TokenSource minting with m. It makes no call
// until the first Token.
func NewTokenSource(m Minter, opts ...TokenSourceOption) *TokenSource {
	s := &TokenSource{
		minter:      m,
		now:         time.Now,
		jitter:      rand.Float64,
		mintTimeout: defaultMintTimeout,
	}
	for _, o := range opts {
		o(s)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Token returns a valid token, minting one if none is cached or the cached
// one has expired. Errors are *Error values carrying the issuer's code
// (Unauthenticated for a bad personal access token, PermissionDenied for
// features the user may not use, Unavailable when the issuer is down), or
// ctx's error if ctx ends while waiting for a mint.
func (s *TokenSource) Token(ctx context.Context) (*Token, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &Error{Code: codes.Canceled, Message: ErrClosed.Error(), cause: ErrClosed}
	}
	now := s.now()
	if s.tok != nil && now.Before(s.expireAt) {
		if !now.Before(s.refreshAt) && !now.Before(s.retryAt) && s.inflight == nil {
			s.startLocked()
		}
		tok := s.tok
		s.mu.Unlock()
		return tok, nil
	}
	c := s.inflight
	if c == nil {
		if s.lastErr != nil && now.Before(s.retryAt) {
			// Fail fast while backing off, so a tight retry loop in the
			// caller does not hammer an issuer that just failed.
			err := s.lastErr
			s.mu.Unlock()
			return nil, err
		}
		c = s.startLocked()
	}
	s.mu.Unlock()

	select {
	case <-c.done:
		return c.tok, c.err
	case <-ctx.Done():
		return nil, FromError(ctx.Err())
	}
}

// Close stops any background mint and waits for it. Token fails with
// ErrClosed afterwards. Close is idempotent.
func (s *TokenSource) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// startLocked starts a mint in the background. The mint runs on the
// source's own context, not a caller's, so one caller giving up does not
// fail the others waiting on it. s.mu must be held.
func (s *TokenSource) startLocked() *mintCall {
	c := &mintCall{done: make(chan struct{})}
	s.inflight = c
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tok, err := s.mint()
		s.finish(c, tok, err)
	}()
	return c
}

func (s *TokenSource) mint() (*Token, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.mintTimeout)
	defer cancel()
	req := &issuerv1.MintTokenRequest{Features: s.features}
	if s.ttl > 0 {
		req.Ttl = durationpb.New(s.ttl)
	}
	resp, err := s.minter.MintToken(ctx, req)
	if err != nil {
		e := FromError(err)
		return nil, &Error{Code: e.Code, Message: "mint token: " + e.Message, RetryAfter: e.RetryAfter, Hint: e.Hint, cause: e.cause}
	}
	return tokenFromResponse(resp)
}

// finish records a mint's outcome and wakes its waiters.
func (s *TokenSource) finish(c *mintCall, tok *Token, err error) {
	s.mu.Lock()
	now := s.now()
	if err == nil && !now.Before(tok.Expiry) {
		err = newError(codes.Internal, "mint token: issuer returned a token that expired at %s", tok.Expiry.UTC().Format(time.RFC3339))
	}
	if err != nil {
		s.failures++
		s.lastErr = err
		s.retryAt = now.Add(s.backoff(s.failures))
	} else {
		life := tok.Expiry.Sub(now)
		margin := min(maxExpiryMargin, life/10)
		s.tok = tok
		s.expireAt = tok.Expiry.Add(-margin)
		frac := refreshMin + (refreshMax-refreshMin)*s.jitter()
		s.refreshAt = now.Add(time.Duration(float64(life) * frac))
		s.failures = 0
		s.lastErr = nil
		s.retryAt = time.Time{}
	}
	s.inflight = nil
	s.mu.Unlock()
	c.tok, c.err = tok, err
	close(c.done)
}

// backoff is the jittered delay before background attempt n+1 after n
// consecutive failures: 1 s doubling to 1 min, each in [d/2, d).
func (s *TokenSource) backoff(n int) time.Duration {
	d := minRetryBackoff << min(n-1, 6)
	d = min(d, maxRetryBackoff)
	return d/2 + time.Duration(float64(d/2)*s.jitter())
}

// StaticSource returns a Source that always returns tok, for a token
// obtained elsewhere (TokenFromJWT). After tok expires it returns an
// Unauthenticated *Error rather than send a token the gateway would refuse.
func StaticSource(tok *Token) Source { return staticSource{tok: tok, now: time.Now} }

type staticSource struct {
	tok *Token
	now func() time.Time
}

func (s staticSource) Token(context.Context) (*Token, error) {
	if !s.now().Before(s.tok.Expiry) {
		return nil, newError(codes.Unauthenticated, "token expired at %s", s.tok.Expiry.UTC().Format(time.RFC3339))
	}
	return s.tok, nil
}

// Interface guards.
var (
	_ Source = (*TokenSource)(nil)
	_ Source = staticSource{}
)
