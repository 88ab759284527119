package completion

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits bound what one request and one user may use. Zero fields take the
// defaults in withDefaults.
type Limits struct {
	MaxMessages      int   // messages per request (256)
	MaxPromptBytes   int   // message contents + code context (1 MiB)
	MaxTokens        int   // upper bound for options.max_tokens (32768)
	DefaultMaxTokens int   // when the caller sets none (1024)
	MaxAnswerBytes   int   // one answer's text, streamed or aggregated (4 MiB)
	MaxEventBytes    int   // one upstream SSE event / NDJSON line (1 MiB)
	MaxBodyBytes     int64 // one upstream response body (64 MiB)
	// MaxBufferedBytes is how much text may wait for a slow caller before
	// the model is paused (64 KiB); ClientSendTimeout is how long a caller
	// may make no progress before its stream ends (30 s).
	MaxBufferedBytes  int
	ClientSendTimeout time.Duration
	// Per user (keyed by Config.Caller: the proven global user id when the
	// token binds one). Every call counts, also one refused as invalid.
	UserRequestsPerMinute int // 0 means unlimited
	UserConcurrentStreams int // 0 means unlimited
	// TotalConcurrentStreams bounds streams across all users (0: unlimited).
	TotalConcurrentStreams int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxMessages, 256)
	def(&l.MaxPromptBytes, 1<<20)
	def(&l.MaxTokens, 32768)
	def(&l.DefaultMaxTokens, 1024)
	def(&l.MaxAnswerBytes, 4<<20)
	def(&l.MaxEventBytes, 1<<20)
	def(&l.MaxBufferedBytes, 64<<10)
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 64 << 20
	}
	if l.ClientSendTimeout <= 0 {
		l.ClientSendTimeout = 30 * time.Second
	}
	return l
}

// limiter enforces the per-user and total limits.
type limiter struct {
	l     Limits
	mu    sync.Mutex
	users map[string]*userState
	total int
}

type userState struct {
	rate   *rate.Limiter
	active int
	seen   time.Time
}

func newLimiter(l Limits) *limiter { return &limiter{l: l, users: map[string]*userState{}} }

// acquire admits one request for user or returns ResourceExhausted. The
// returned release must be called when the request ends.
func (lm *limiter) acquire(user string) (release func(), err error) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.l.TotalConcurrentStreams > 0 && lm.total >= lm.l.TotalConcurrentStreams {
		return nil, status.Error(codes.ResourceExhausted, "gateway is at its concurrent stream limit; retry later")
	}
	u := lm.users[user]
	if u == nil {
		if len(lm.users) > 100_000 {
			lm.gcLocked()
		}
		u = &userState{}
		if lm.l.UserRequestsPerMinute > 0 {
			u.rate = rate.NewLimiter(rate.Limit(float64(lm.l.UserRequestsPerMinute)/60), lm.l.UserRequestsPerMinute)
		}
		lm.users[user] = u
	}
	u.seen = time.Now()
	if lm.l.UserConcurrentStreams > 0 && u.active >= lm.l.UserConcurrentStreams {
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("too many concurrent requests for this user (limit %d)", lm.l.UserConcurrentStreams))
	}
	if u.rate != nil && !u.rate.Allow() {
		return nil, status.Error(codes.ResourceExhausted, fmt.Sprintf("request rate limit exceeded for this user (%d per minute)", lm.l.UserRequestsPerMinute))
	}
	u.active++
	lm.total++
	var once sync.Once
	return func() {
		once.Do(func() {
			lm.mu.Lock()
			u.active--
			lm.total--
			lm.mu.Unlock()
		})
	}, nil
}

// gcLocked forgets idle users so the map cannot grow without bound.
func (lm *limiter) gcLocked() {
	cutoff := time.Now().Add(-2 * time.Minute)
	for k, u := range lm.users {
		if u.active == 0 && u.seen.Before(cutoff) {
			delete(lm.users, k)
		}
	}
}
