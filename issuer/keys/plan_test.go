package keys

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

// The schedule of every row: a key signs a day, tokens live an hour, and
// verifiers may be a minute off.
var sched = Schedule{RotationPeriod: 24 * time.Hour, MaxTokenTTL: time.Hour, Leeway: time.Minute}

var p0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return p0.Add(d) }

func active(kid string, activated time.Duration) store.SigningKey {
	return store.SigningKey{KID: kid, State: store.KeyActive, CreateTime: at(activated - 24*time.Hour), ActivateTime: at(activated)}
}

func prepared(kid string, created, activates time.Duration) store.SigningKey {
	return store.SigningKey{KID: kid, State: store.KeyPrepared, CreateTime: at(created), ActivateTime: at(activates)}
}

func retired(kid string, retiredAt, expires time.Duration) store.SigningKey {
	return store.SigningKey{KID: kid, State: store.KeyRetired, CreateTime: at(retiredAt - 48*time.Hour),
		ActivateTime: at(retiredAt - 24*time.Hour), RetireTime: at(retiredAt), ExpireTime: at(expires)}
}

// fresh is a key plan asks to generate.
func fresh(state store.KeyState, created, activates time.Duration) store.SigningKey {
	return store.SigningKey{State: state, CreateTime: at(created), ActivateTime: at(activates)}
}

// then returns k as plan leaves it: activated at now, or retired at now.
func activatedAt(k store.SigningKey, now time.Duration) store.SigningKey {
	k.State, k.ActivateTime = store.KeyActive, at(now)
	return k
}

func retiredAt(k store.SigningKey, now time.Duration) store.SigningKey {
	k.State, k.RetireTime, k.ExpireTime = store.KeyRetired, at(now), at(now+time.Hour+time.Minute)
	return k
}

func show(keys []store.SigningKey) string {
	var b strings.Builder
	for _, k := range keys {
		kid := k.KID
		if kid == "" {
			kid = "<new>"
		}
		fmt.Fprintf(&b, "\n  %s state=%d create=%v activate=%v retire=%v expire=%v", kid, k.State,
			k.CreateTime.Sub(p0), k.ActivateTime.Sub(p0), sinceP0(k.RetireTime), sinceP0(k.ExpireTime))
	}
	return b.String()
}

func sinceP0(t time.Time) any {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(p0)
}

func TestPlan(t *testing.T) {
	h := time.Hour
	day := 24 * h
	a, b := active("A", 0), prepared("B", 0, day)
	tests := []struct {
		name    string
		keys    []store.SigningKey
		now     time.Duration
		force   bool
		want    []store.SigningKey
		act     string
		retired []string
		pruned  []string
	}{
		{name: "first start creates an active key and prepares the next a period ahead",
			now:  0,
			want: []store.SigningKey{fresh(store.KeyActive, 0, 0), fresh(store.KeyPrepared, 0, day)}},
		{name: "before the prepared key's time nothing changes",
			keys: []store.SigningKey{a, b}, now: day - time.Nanosecond,
			want: []store.SigningKey{a, b}},
		{name: "prepare: a missing next key is prepared a period after the active key activated",
			keys: []store.SigningKey{active("A", -2*h)}, now: 0,
			want: []store.SigningKey{active("A", -2*h), fresh(store.KeyPrepared, 0, day-2*h)}},
		{name: "prepare: never less than a token lifetime before it signs",
			keys: []store.SigningKey{active("A", -day+10*time.Minute)}, now: 0,
			want: []store.SigningKey{active("A", -day+10*time.Minute), fresh(store.KeyPrepared, 0, h)}},
		{name: "activate: the prepared key signs on time, the active one retires, the next is prepared",
			keys: []store.SigningKey{a, b}, now: day,
			want: []store.SigningKey{activatedAt(b, day), fresh(store.KeyPrepared, day, 2*day), retiredAt(a, day)},
			act:  "B", retired: []string{"A"}},
		{name: "retire: a retired key stays while tokens it signed may live",
			keys: []store.SigningKey{a, b, retired("R", 0, h+time.Minute)}, now: h + time.Minute - time.Nanosecond,
			want: []store.SigningKey{a, b, retired("R", 0, h+time.Minute)}},
		{name: "prune: a retired key goes once every token it signed has expired",
			keys: []store.SigningKey{a, b, retired("R", 0, h+time.Minute)}, now: h + time.Minute,
			want:   []store.SigningKey{a, b},
			pruned: []string{"R"}},
		{name: "downtime catch-up: off for three periods, rotate once and schedule from now",
			keys: []store.SigningKey{a, b, retired("R", 0, h+time.Minute)}, now: 3*day + 5*h,
			want:    []store.SigningKey{activatedAt(b, 3*day+5*h), fresh(store.KeyPrepared, 3*day+5*h, 4*day+5*h), retiredAt(a, 3*day+5*h)},
			act:     "B",
			retired: []string{"A"},
			pruned:  []string{"R"}},
		{name: "forced rotation (RotateKeys) activates the prepared key before its time",
			keys: []store.SigningKey{a, b}, now: 2 * h, force: true,
			want: []store.SigningKey{activatedAt(b, 2*h), fresh(store.KeyPrepared, 2*h, day+2*h), retiredAt(a, 2*h)},
			act:  "B", retired: []string{"A"}},
		{name: "forced rotation without a prepared key only prepares one: nothing unpublished may sign",
			keys: []store.SigningKey{a}, now: 2 * h, force: true,
			want: []store.SigningKey{a, fresh(store.KeyPrepared, 2*h, day)}},
		{name: "an interrupted rotation promotes the prepared key verifiers already hold",
			keys: []store.SigningKey{b, retired("R", 0, h+time.Minute)}, now: 2 * h,
			want:   []store.SigningKey{activatedAt(b, 2*h), fresh(store.KeyPrepared, 2*h, day+2*h)},
			act:    "B",
			pruned: []string{"R"}},
		{name: "a second active key is retired, not dropped: it may have signed",
			keys: []store.SigningKey{active("X", -h), a, b}, now: 0,
			want:    []store.SigningKey{a, b, retiredAt(active("X", -h), 0)},
			retired: []string{"X"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.keys)
			p := plan(in, at(tc.now), sched, tc.force)
			if !slices.EqualFunc(p.Keys, tc.want, equalKey) {
				t.Errorf("keys:%s\nwant:%s", show(p.Keys), show(tc.want))
			}
			if p.Activated != tc.act || !slices.Equal(p.Retired, tc.retired) || !slices.Equal(p.Pruned, tc.pruned) {
				t.Errorf("activated %q retired %v pruned %v, want %q %v %v", p.Activated, p.Retired, p.Pruned, tc.act, tc.retired, tc.pruned)
			}
			if !slices.EqualFunc(in, tc.keys, equalKey) {
				t.Error("plan modified its input")
			}
			wantChanged := !slices.EqualFunc(tc.keys, tc.want, equalKey)
			if p.Changed() != wantChanged {
				t.Errorf("Changed() = %v, want %v", p.Changed(), wantChanged)
			}
			checkInvariants(t, p, at(tc.now))
		})
	}
}

func equalKey(a, b store.SigningKey) bool {
	return a.KID == b.KID && a.State == b.State && a.CreateTime.Equal(b.CreateTime) && a.ActivateTime.Equal(b.ActivateTime) &&
		a.RetireTime.Equal(b.RetireTime) && a.ExpireTime.Equal(b.ExpireTime)
}

// checkInvariants holds for every plan, whatever it started from.
func checkInvariants(t *testing.T, p Plan, now time.Time) {
	t.Helper()
	var actives, prepareds int
	for _, k := range p.Keys {
		switch k.State {
		case store.KeyActive:
			actives++
		case store.KeyPrepared:
			prepareds++
			if k.ActivateTime.Before(now.Add(sched.MaxTokenTTL)) && k.KID == "" {
				t.Errorf("new prepared key activates at %v, less than a token lifetime after now", k.ActivateTime.Sub(p0))
			}
		case store.KeyRetired:
			if !now.Before(k.ExpireTime) {
				t.Errorf("retired key %s kept past its expiry", k.KID)
			}
		}
	}
	if actives != 1 || prepareds != 1 {
		t.Errorf("%d active and %d prepared keys, want one of each", actives, prepareds)
	}
}

// TestPlanIsStable: carrying a plan out and planning again at the same
// moment changes nothing, so a repeated check is a no-op.
func TestPlanIsStable(t *testing.T) {
	keys := []store.SigningKey{active("A", 0), prepared("B", 0, 24*time.Hour), retired("R", 0, time.Hour+time.Minute)}
	for _, now := range []time.Duration{0, 30 * time.Minute, 24 * time.Hour, 72 * time.Hour} {
		p := plan(keys, at(now), sched, false)
		for i := range p.Keys {
			if p.Keys[i].KID == "" {
				p.Keys[i].KID = fmt.Sprintf("new-%d", i)
			}
		}
		if again := plan(p.Keys, at(now), sched, false); again.Changed() {
			t.Errorf("at +%v a second plan changes again: %s", now, show(again.Keys))
		}
	}
}
