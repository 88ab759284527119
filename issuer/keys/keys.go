// Package keys is the issuer's signing-key manager: it generates keys,
// seals their private halves with the KEK before they reach the store, and
// rotates them on a schedule the way SPIRE does, so verifiers always know a
// key before it signs anything and keep it until every token it signed has
// expired:
//
//	PREPARED (published, not signing)
//	  → ACTIVE (signing; exactly one)
//	  → RETIRED (published until retire + max token TTL + leeway)
//	  → pruned
//
// A prepared key is published one rotation period (never less than the max
// token TTL) before it activates, and a retired key stays published until
// retire + max token TTL + leeway.
//
// Policy is apart from mechanics, as in SPIRE's CA manager: plan (plan.go)
// decides the next state from key metadata alone and is tested without
// crypto; the Manager carries a plan out (generate, seal, persist, publish)
// and signs; a Rotator owns the ticker and asks a Gate whether this replica
// may advance the schedule at all. The clock is injected and Tick advances
// the schedule, so tests drive every phase without sleeping. Every signature
// is verified against the public key before it is returned: a faulty signer
// fails closed instead of minting tokens nobody can verify.
package keys

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/issuer/broadcast"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/keypolicy"
)

// Supported algorithms: the ones pkg/keypolicy accepts.
const (
	RS256 = keypolicy.RS256
	ES256 = keypolicy.ES256
	EdDSA = keypolicy.EdDSA
)

// Defaults of the rotation schedule.
const (
	DefaultRotationPeriod = 24 * time.Hour
	DefaultLeeway         = 5 * time.Minute
)

// ErrNoActiveKey is returned by Sign before the manager has an active key.
var ErrNoActiveKey = errors.New("keys: no active signing key")

// Store is the part of store.Store the manager needs.
type Store interface {
	ListKeys(ctx context.Context) ([]store.SigningKey, uint64, error)
	SwapKeys(ctx context.Context, keys []store.SigningKey, ifRevision uint64) (uint64, error)
}

// Config configures New.
type Config struct {
	Store Store
	KEK   *kek.KEK
	// Alg of newly generated keys: RS256 (default), ES256 or EdDSA. Keys of
	// another algorithm already stored keep working until they expire.
	Alg string
	// RotationPeriod is how long a key signs (default 24 h). The next key is
	// prepared when the current one activates, so it is published one
	// RotationPeriod before it signs; it must be at least MaxTokenTTL.
	RotationPeriod time.Duration
	// MaxTokenTTL is the longest lifetime of any token signed (required).
	MaxTokenTTL time.Duration
	// Leeway is added to a retired key's lifetime to cover verifiers' clock
	// skew (default 5 min).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives key life-cycle events (never key material).
	Logger zerolog.Logger
	// Gate says whether New may advance the schedule (default Always);
	// pass the one the Rotator asks. New creates the first keys of an
	// empty store whatever it says.
	Gate Gate
}

// Info is a key's public metadata.
type Info struct {
	KID          string
	Alg          string
	State        store.KeyState
	CreateTime   time.Time
	ActivateTime time.Time
	RetireTime   time.Time
	ExpireTime   time.Time
}

// KeySet is the published key set at one revision. Values are immutable
// once published; share them freely.
type KeySet struct {
	Revision   uint64
	JWKS       []byte // RFC 7517 JWK Set JSON
	Keys       []Info // same order as JWKS
	UpdateTime time.Time
	// NextActivation is when the prepared key starts signing.
	NextActivation time.Time
}

type key struct {
	meta   store.SigningKey
	signer crypto.Signer
	pub    jwk.Key
	header string // the base64url protected header of its tokens (jws.go)
	// verified is set once a signature by this key verified with its
	// published public key (see Sign). Shared by the copies of a key that
	// each state change makes.
	verified *atomic.Bool
}

// Manager owns the signing keys. Safe for concurrent use.
type Manager struct {
	cfg   Config
	sched Schedule
	hub   broadcast.Hub[*KeySet]

	// rotMu serialises schedule changes, so key generation (slow for RSA)
	// and the store write happen without holding mu, which Sign needs.
	rotMu  sync.Mutex
	mu     sync.RWMutex
	keys   []*key // active, prepared, retired (newest first); replaced, never mutated
	active *key
}

// New loads the stored keys (all of them must decrypt with the KEK, or New
// fails: a wrong KEK is an operator error to surface at start), then runs
// Tick once (if cfg.Gate allows, or the store has no key yet) so an empty
// store gets an active and a prepared key.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.KEK == nil {
		return nil, errors.New("keys: Store and KEK are required")
	}
	if cfg.Alg == "" {
		cfg.Alg = RS256
	}
	if _, err := jwaAlg(cfg.Alg); err != nil {
		return nil, err
	}
	if cfg.RotationPeriod == 0 {
		cfg.RotationPeriod = DefaultRotationPeriod
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxTokenTTL <= 0 {
		return nil, errors.New("keys: MaxTokenTTL must be positive")
	}
	if cfg.RotationPeriod < cfg.MaxTokenTTL {
		return nil, fmt.Errorf("keys: rotation period %v is shorter than the max token TTL %v: the next key would not be published a full token lifetime before it signs", cfg.RotationPeriod, cfg.MaxTokenTTL)
	}
	if cfg.Gate == nil {
		cfg.Gate = Always
	}
	m := &Manager{cfg: cfg, sched: Schedule{RotationPeriod: cfg.RotationPeriod, MaxTokenTTL: cfg.MaxTokenTTL, Leeway: cfg.Leeway}}
	if err := m.Reload(ctx); err != nil {
		return nil, err
	}
	// A replica that may not advance the schedule still creates the first
	// keys of an empty store: the conditional write lets one replica win.
	if m.KeySet() == nil || cfg.Gate.MayAdvance(ctx) {
		if err := m.Tick(ctx, cfg.Now()); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func jwaAlg(alg string) (jwa.SignatureAlgorithm, error) {
	if !keypolicy.Allowed(alg) {
		return "", fmt.Errorf("keys: %w", keypolicy.Unsupported(alg))
	}
	return jwa.SignatureAlgorithm(alg), nil
}

func aad(kid string) []byte { return []byte("airlock/signing-key/" + kid) }

func (m *Manager) unseal(sk store.SigningKey) (*key, error) {
	der, err := m.cfg.KEK.Open(sk.Sealed, aad(sk.KID))
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: %w", sk.KID, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("keys: key %s: parse: %w", sk.KID, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("keys: key %s: %T is not a signer", sk.KID, priv)
	}
	k, err := newKey(signer, sk.Alg)
	if err != nil {
		return nil, err
	}
	if k.meta.KID != sk.KID {
		return nil, fmt.Errorf("keys: key %s: thumbprint mismatch", sk.KID)
	}
	k.meta = sk
	return k, nil
}

// newKey builds the public JWK (kid = RFC 7638 thumbprint) for signer. The
// key must be the type and size keypolicy binds alg to.
func newKey(signer crypto.Signer, alg string) (*key, error) {
	a, err := jwaAlg(alg)
	if err != nil {
		return nil, err
	}
	if !keypolicy.Matches(alg, signer.Public()) {
		return nil, fmt.Errorf("keys: a %T key does not meet the %s key policy", signer, alg)
	}
	pub, err := jwk.FromRaw(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("keys: public jwk: %w", err)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("keys: thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)
	for k, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: a, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := pub.Set(k, v); err != nil {
			return nil, err
		}
	}
	header, err := encodeHeader(alg, kid)
	if err != nil {
		return nil, err
	}
	return &key{meta: store.SigningKey{KID: kid, Alg: alg}, signer: signer, pub: pub, header: header, verified: new(atomic.Bool)}, nil
}

// generateKey makes a new key with meta's State, CreateTime and
// ActivateTime, its private half sealed with the KEK.
func (m *Manager) generateKey(meta store.SigningKey) (*key, error) {
	signer, err := keypolicy.Generate(m.cfg.Alg)
	if err != nil {
		return nil, fmt.Errorf("keys: generate: %w", err)
	}
	k, err := newKey(signer, m.cfg.Alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(signer)
	if err != nil {
		return nil, fmt.Errorf("keys: marshal: %w", err)
	}
	sealed, err := m.cfg.KEK.Seal(der, aad(k.meta.KID))
	clear(der)
	if err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	k.meta.State, k.meta.Sealed = meta.State, sealed
	k.meta.CreateTime, k.meta.ActivateTime = meta.CreateTime, meta.ActivateTime
	return k, nil
}

// Tick advances the schedule to now: it creates the first active key,
// activates the prepared key once its time has come (retiring the active
// one), prepares a next key if there is none, and prunes retired keys whose
// tokens have all expired (see plan). Changes are stored (durably) before
// they are published or used for signing.
//
// Tick decides from the keys in the store, not from those in memory, and
// writes with store.SwapKeys at the revision it read: when several replicas
// share the store and decide at once, one write wins and the others read
// again and find nothing left to do, so a rotation happens once.
func (m *Manager) Tick(ctx context.Context, now time.Time) error {
	return m.advance(ctx, now, false)
}

// Rotate activates the prepared key now, retires the active one and
// prepares a new next key, and returns the resulting key set. Like Tick it
// decides from the stored keys under a conditional write, so a Rotate on any
// replica rotates exactly once, even while another replica changes the keys.
func (m *Manager) Rotate(ctx context.Context) (*KeySet, error) {
	if err := m.advance(ctx, m.cfg.Now(), true); err != nil {
		return nil, err
	}
	return m.KeySet(), nil
}

// Reload reads the stored keys, unseals those it does not hold yet, signs
// with the stored active key and publishes the stored set: how a replica
// follows a change another replica made. It changes nothing in the store.
// An error (the store unreachable, a key that does not open with the KEK)
// leaves the current keys in use.
func (m *Manager) Reload(ctx context.Context) error {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	cur, rev, err := m.load(ctx)
	if err != nil {
		return err
	}
	m.install(cur, rev, m.cfg.Now())
	return nil
}

// maxSwapAttempts bounds how often advance re-decides after another writer
// changed the keys under it.
const maxSwapAttempts = 5

// advance plans the next state from the stored keys and carries it out.
func (m *Manager) advance(ctx context.Context, now time.Time, force bool) error {
	m.rotMu.Lock()
	defer m.rotMu.Unlock()
	for attempt := 1; ; attempt++ {
		cur, rev, err := m.load(ctx)
		if err != nil {
			return err
		}
		metas := make([]store.SigningKey, len(cur))
		for i, k := range cur {
			metas[i] = k.meta
		}
		p := plan(metas, now, m.sched, force)
		if !p.Changed() {
			m.install(cur, rev, now)
			return nil
		}
		err = m.carryOut(ctx, cur, rev, p, now, force)
		if !errors.Is(err, store.ErrConflict) || attempt == maxSwapAttempts {
			return err
		}
		m.cfg.Logger.Debug().Msg("signing keys changed by another replica; deciding again")
	}
}

// load reads the stored keys and returns them ready to sign, reusing the
// unsealed keys the manager already holds. The caller holds rotMu.
func (m *Manager) load(ctx context.Context) ([]*key, uint64, error) {
	stored, rev, err := m.cfg.Store.ListKeys(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("keys: load: %w", err)
	}
	m.mu.RLock()
	held := make(map[string]*key, len(m.keys))
	for _, k := range m.keys {
		held[k.meta.KID] = k
	}
	m.mu.RUnlock()
	out := make([]*key, 0, len(stored))
	for _, sk := range stored {
		if old, ok := held[sk.KID]; ok && old.meta.Alg == sk.Alg {
			c := *old // a copy: keys are replaced, never mutated; shares the verified flag
			c.meta = sk
			out = append(out, &c)
			continue
		}
		k, err := m.unseal(sk)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, k)
	}
	return out, rev, nil
}

// install makes keys (stored at rev) the ones that sign and publishes them.
// The hub ignores a revision it already has. The caller holds rotMu.
func (m *Manager) install(keys []*key, rev uint64, now time.Time) {
	if len(keys) == 0 {
		return
	}
	if hubRev, _ := m.hub.Current(); hubRev >= rev && hubRev != 0 {
		return
	}
	m.mu.Lock()
	m.keys = keys
	m.sortLocked()
	snap := m.snapshotLocked(rev, now)
	m.mu.Unlock()
	m.hub.Publish(rev, snap)
}

// carryOut makes p real: it generates and seals the keys p asks for,
// stores the whole set if the stored keys are still at rev, and only once
// that is durable signs with it and publishes it. On error (store.ErrConflict
// when another writer came first) nothing changed (a generated key that was
// not stored is forgotten). The caller holds rotMu.
func (m *Manager) carryOut(ctx context.Context, cur []*key, rev uint64, p Plan, now time.Time, force bool) error {
	byKID := make(map[string]*key, len(cur))
	for _, k := range cur {
		byKID[k.meta.KID] = k
	}
	next := make([]*key, 0, len(p.Keys))
	metas := make([]store.SigningKey, 0, len(p.Keys))
	for _, meta := range p.Keys {
		var k *key
		if meta.KID == "" {
			var err error
			if k, err = m.generateKey(meta); err != nil {
				return err
			}
		} else {
			old, ok := byKID[meta.KID]
			if !ok {
				return fmt.Errorf("keys: plan names unknown key %s", meta.KID)
			}
			c := *old
			c.meta = meta
			k = &c
		}
		next, metas = append(next, k), append(metas, k.meta)
	}
	newRev, err := m.cfg.Store.SwapKeys(ctx, metas, rev)
	if err != nil {
		return fmt.Errorf("keys: store: %w", err)
	}
	for _, kid := range p.Pruned {
		m.cfg.Logger.Info().Str("kid", kid).Msg("retired signing key pruned")
	}
	if p.Activated != "" {
		m.cfg.Logger.Info().Str("kid", p.Activated).Strs("retired_kids", p.Retired).Bool("forced", force).Msg("signing key activated")
	}
	m.install(next, newRev, now)
	return nil
}

func stateRank(s store.KeyState) int {
	switch s {
	case store.KeyActive:
		return 0
	case store.KeyPrepared:
		return 1
	}
	return 2
}

func (m *Manager) sortLocked() {
	sort.SliceStable(m.keys, func(i, j int) bool {
		a, b := m.keys[i].meta, m.keys[j].meta
		if stateRank(a.State) != stateRank(b.State) {
			return stateRank(a.State) < stateRank(b.State)
		}
		return a.RetireTime.After(b.RetireTime)
	})
	m.active = nil
	for _, k := range m.keys {
		if k.meta.State == store.KeyActive {
			m.active = k
		}
	}
}

func (m *Manager) snapshotLocked(rev uint64, now time.Time) *KeySet {
	set := jwk.NewSet()
	ks := &KeySet{Revision: rev, UpdateTime: now}
	for _, k := range m.keys {
		_ = set.AddKey(k.pub) // distinct kids: AddKey cannot fail
		ks.Keys = append(ks.Keys, Info{
			KID: k.meta.KID, Alg: k.meta.Alg, State: k.meta.State, CreateTime: k.meta.CreateTime,
			ActivateTime: k.meta.ActivateTime, RetireTime: k.meta.RetireTime, ExpireTime: k.meta.ExpireTime,
		})
		if k.meta.State == store.KeyPrepared {
			ks.NextActivation = k.meta.ActivateTime
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		// Public JWKs of supported types always marshal.
		panic(fmt.Sprintf("keys: marshal jwks: %v", err))
	}
	ks.JWKS = b
	return ks
}

// KeySet returns the current published key set (nil before New returns).
func (m *Manager) KeySet() *KeySet {
	_, ks := m.hub.Current()
	return ks
}

// Hub returns the broadcaster of key sets, for watchers.
func (m *Manager) Hub() *broadcast.Hub[*KeySet] { return &m.hub }

// Sign returns a compact JWS of payload signed by the active key, with the
// protected header {alg, kid, typ: JWT}.
//
// The first signature of each key is verified with the published public key
// before it is returned, so a private key that does not match what verifiers
// hold (a corrupt store, a wrong KEK) never signs a token that would fail
// everywhere. Later signatures are not re-verified: the check would double
// the cost of every ES256 mint, and per-signature faults are already
// guarded where they leak keys (Go's crypto/rsa checks every RSA signature
// it makes).
func (m *Manager) Sign(payload []byte) (string, error) {
	m.mu.RLock()
	k := m.active
	m.mu.RUnlock()
	if k == nil {
		return "", ErrNoActiveKey
	}
	alg, err := jwaAlg(k.meta.Alg)
	if err != nil {
		return "", err
	}
	out, err := compact(k.signer, k.meta.Alg, k.header, payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	if !k.verified.Load() {
		if _, err := jws.Verify([]byte(out), jws.WithKey(alg, k.pub)); err != nil {
			return "", fmt.Errorf("keys: own signature does not verify: %w", err)
		}
		k.verified.Store(true)
	}
	return out, nil
}

// CacheMaxAge is how long an HTTP verifier may cache ks: until the prepared
// key activates (so a verifier refetches in time to learn the key prepared
// after it), at least a minute (to bound load) and at most a rotation period.
func (m *Manager) CacheMaxAge(ks *KeySet, now time.Time) time.Duration {
	d := ks.NextActivation.Sub(now)
	if d > m.cfg.RotationPeriod {
		d = m.cfg.RotationPeriod
	}
	if d < time.Minute {
		d = time.Minute
	}
	return d.Truncate(time.Second)
}
