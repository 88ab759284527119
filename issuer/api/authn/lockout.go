package authn

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/airlock-dev/airlock/pkg/connlimit"
)

// ErrLockedOut: the caller's address presented too many invalid personal
// access tokens lately; it is refused, without a store lookup, until its
// allowance refills.
var ErrLockedOut = errors.New(MsgLockedOut)

// MsgLockedOut is the message of ErrLockedOut.
const MsgLockedOut = "too many invalid personal access tokens from this address: retry later"

// lockoutMaxAddrs bounds the addresses a Lockout remembers; past it, the
// ones whose allowance has refilled are forgotten.
const lockoutMaxAddrs = 100_000

// A Lockout limits the invalid personal access tokens one address may
// present: a burst of perMinute, refilled evenly (one every 60/perMinute
// seconds). While an address has none left, every PAT it presents is
// refused with ErrLockedOut, valid or not and without a store lookup: guessing
// stops, and so does the store work guesses cost. Addresses are keyed as
// connlimit keys them (the IP; an IPv6 address by its /64). Callers behind
// one proxy share its address, so one of them guessing locks out the others:
// that is the price of the limit, as with GitLab's failed-authentication ban.
// A nil *Lockout limits nothing. Safe for concurrent use.
type Lockout struct {
	perMinute int
	mu        sync.Mutex
	addrs     map[string]*rate.Limiter
}

// NewLockout returns a Lockout allowing perMinute invalid PATs per address
// per minute; nil when perMinute is 0 or less (no limit).
func NewLockout(perMinute int) *Lockout {
	if perMinute <= 0 {
		return nil
	}
	return &Lockout{perMinute: perMinute, addrs: map[string]*rate.Limiter{}}
}

// RetryAfter returns how long the address from (an "ip:port", or any
// string naming the caller) must wait at now before it may present a PAT
// again: 0 when it may now.
func (l *Lockout) RetryAfter(from string, now time.Time) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.addrs[connlimit.Key(from)]
	if lim == nil {
		return 0
	}
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing * float64(time.Minute) / float64(l.perMinute))
}

// Failed records an invalid PAT from the address at now, and reports
// whether that used up its allowance (the address is locked out from now).
func (l *Lockout) Failed(from string, now time.Time) (lockedOut bool) {
	if l == nil {
		return false
	}
	key := connlimit.Key(from)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.addrs[key]
	if lim == nil {
		if len(l.addrs) >= lockoutMaxAddrs {
			l.forgetLocked(now)
		}
		lim = rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)
		l.addrs[key] = lim
	}
	lim.AllowN(now, 1)
	return lim.TokensAt(now) < 1
}

// forgetLocked makes room: it drops the addresses whose allowance is whole
// again, which changes nothing, and if that frees less than 1 %, addresses
// at random down to 99 % of the bound, so memory stays bounded even when
// more addresses than lockoutMaxAddrs guess at once (those forgotten get a
// fresh allowance), and the scan runs at most once per 1,000 new addresses.
func (l *Lockout) forgetLocked(now time.Time) {
	for k, lim := range l.addrs {
		if lim.TokensAt(now) >= float64(l.perMinute) {
			delete(l.addrs, k)
		}
	}
	for k := range l.addrs {
		if len(l.addrs) <= lockoutMaxAddrs*99/100 {
			return
		}
		delete(l.addrs, k)
	}
}
