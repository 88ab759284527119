package keys

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// DefaultCheckInterval is how often a Rotator checks the schedule.
const DefaultCheckInterval = 30 * time.Second

// Gate says whether this replica may advance the key lifecycle. A single
// issuer always may (Always). With several issuer replicas sharing one
// store, only the holder of the rotation lease may: the others must not
// generate keys of their own.
type Gate interface {
	// MayAdvance reports whether this replica may change the key set now.
	// It must not block for long: it is asked on every check.
	MayAdvance(ctx context.Context) bool
}

// GateFunc adapts a function to Gate.
type GateFunc func(ctx context.Context) bool

// MayAdvance calls f.
func (f GateFunc) MayAdvance(ctx context.Context) bool { return f(ctx) }

// Always is the Gate of a single issuer.
var Always Gate = GateFunc(func(context.Context) bool { return true })

// Advancer moves the key schedule to a point in time (*Manager).
type Advancer interface {
	Tick(ctx context.Context, now time.Time) error
}

// RotatorConfig configures NewRotator. Zero values take the defaults.
type RotatorConfig struct {
	// Interval between checks (default DefaultCheckInterval). A key
	// activates at most one Interval late; it was published a full period
	// before, so that delay is harmless.
	Interval time.Duration
	// Gate decides whether this replica advances (default Always).
	Gate Gate
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives failed checks.
	Logger zerolog.Logger
}

// Rotator owns the ticker that advances the key schedule.
type Rotator struct {
	keys Advancer
	cfg  RotatorConfig
}

// NewRotator returns a Rotator that advances keys on cfg's schedule.
func NewRotator(keys Advancer, cfg RotatorConfig) *Rotator {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultCheckInterval
	}
	if cfg.Gate == nil {
		cfg.Gate = Always
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Rotator{keys: keys, cfg: cfg}
}

// Run checks the schedule every Interval until ctx is done, then returns
// nil. A failed check is logged and retried at the next one; signing
// carries on with the current active key meanwhile.
func (r *Rotator) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Check(ctx); err != nil {
				r.cfg.Logger.Error().Err(err).Msg("key rotation check failed")
			}
		}
	}
}

// Check advances the schedule to now if the Gate allows it, and returns
// the Advancer's error. It does nothing (and returns nil) when the Gate
// says no.
func (r *Rotator) Check(ctx context.Context) error {
	if !r.cfg.Gate.MayAdvance(ctx) {
		return nil
	}
	return r.keys.Tick(ctx, r.cfg.Now())
}
