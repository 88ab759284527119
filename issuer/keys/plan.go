package keys

import (
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

// Schedule is the rotation policy: how long a key signs, how long a token
// lives, and the verifiers' clock skew.
type Schedule struct {
	// RotationPeriod is how long a key signs. The next key is prepared when
	// the current one activates, so it is published one RotationPeriod
	// before it signs.
	RotationPeriod time.Duration
	// MaxTokenTTL is the longest lifetime of any token signed: no key is
	// ever activated less than MaxTokenTTL after it was published, and a
	// retired key stays published MaxTokenTTL (+ Leeway) after it signed
	// last.
	MaxTokenTTL time.Duration
	// Leeway is added to a retired key's lifetime for verifiers' clock skew.
	Leeway time.Duration
}

// Plan is the next state of the key set, decided from metadata alone (no
// key material): which keys to generate, activate, retire and prune. The
// Manager carries it out: generate, seal, persist, publish.
type Plan struct {
	// Keys is the key set after the change: the active key, the prepared
	// key, then the retired ones. An entry with an empty KID is a key to
	// generate, with the State, CreateTime and ActivateTime given.
	Keys []store.SigningKey
	// Activated is the kid of a stored key that starts signing now (the
	// prepared one on schedule, or on a forced rotation).
	Activated string
	// Retired lists the kids that stop signing now (stay published).
	Retired []string
	// Pruned lists the kids dropped because every token they signed has
	// expired.
	Pruned []string
}

// Changed reports whether carrying out p changes anything.
func (p Plan) Changed() bool {
	if p.Activated != "" || len(p.Retired) > 0 || len(p.Pruned) > 0 {
		return true
	}
	for _, k := range p.Keys {
		if k.KID == "" {
			return true
		}
	}
	return false
}

// plan decides the next state of keys at now. It is pure: the same inputs
// always give the same Plan, and it never reads key material. It keeps these
// invariants, whatever state it starts from (first start, an interrupted
// rotation, an issuer that was off for several periods):
//
//   - exactly one key is active afterwards, and one prepared;
//   - a newly prepared key activates one RotationPeriod after the active key
//     activated, and never earlier than MaxTokenTTL after now (it is
//     published from now on);
//   - the prepared key activates when its time has come, or at once when
//     force is set (RotateKeys); the active key it replaces is retired and
//     stays published until retire + MaxTokenTTL + Leeway;
//   - a retired key is pruned once that time has passed, never earlier.
//
// An issuer that was off for longer than a period catches up in one step:
// the prepared key (already published) activates now, and the next one is
// scheduled a period from now. A second active or prepared key (this
// package never stores one) is retired, so it stays published as long as
// tokens it may have signed live.
func plan(keys []store.SigningKey, now time.Time, s Schedule, force bool) Plan {
	var p Plan
	var active, prepared *store.SigningKey
	var retired []store.SigningKey
	take := func(slot **store.SigningKey, k store.SigningKey) {
		if *slot != nil {
			retired = append(retired, s.retire(**slot, now))
			p.Retired = append(p.Retired, (*slot).KID)
		}
		*slot = &k
	}
	for _, k := range keys {
		switch k.State {
		case store.KeyActive:
			take(&active, k)
		case store.KeyPrepared:
			take(&prepared, k)
		default:
			retired = append(retired, k)
		}
	}
	switch {
	case active == nil && prepared != nil:
		// An interrupted rotation: promote what verifiers already know.
		active, prepared = prepared, nil
		active.State, active.ActivateTime = store.KeyActive, now
		p.Activated = active.KID
	case active == nil:
		active = &store.SigningKey{State: store.KeyActive, CreateTime: now, ActivateTime: now}
	case prepared != nil && (force || !now.Before(prepared.ActivateTime)):
		retired = append([]store.SigningKey{s.retire(*active, now)}, retired...)
		p.Retired = append([]string{active.KID}, p.Retired...)
		active, prepared = prepared, nil
		active.State, active.ActivateTime = store.KeyActive, now
		p.Activated = active.KID
	}
	if prepared == nil {
		prepared = &store.SigningKey{State: store.KeyPrepared, CreateTime: now,
			ActivateTime: active.ActivateTime.Add(s.RotationPeriod)}
		if earliest := now.Add(s.MaxTokenTTL); prepared.ActivateTime.Before(earliest) {
			// After downtime the nominal time may be near or past: still
			// publish the key a full token lifetime before it signs.
			prepared.ActivateTime = earliest
		}
	}
	p.Keys = append(p.Keys, *active, *prepared)
	for _, k := range retired {
		if !now.Before(k.ExpireTime) {
			p.Pruned = append(p.Pruned, k.KID)
			continue
		}
		p.Keys = append(p.Keys, k)
	}
	return p
}

// retire returns k retired at now, published until every token it may
// have signed has expired.
func (s Schedule) retire(k store.SigningKey, now time.Time) store.SigningKey {
	k.State, k.RetireTime = store.KeyRetired, now
	k.ExpireTime = now.Add(s.MaxTokenTTL + s.Leeway)
	return k
}
