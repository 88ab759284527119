// Package minter builds and signs the self-issued tokens exactly as a GitLab
// self-managed instance mints them (see pkg/token), and remembers each
// token's owner so the owner may revoke it.
package minter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/token"
)

// Errors of Mint.
var (
	// ErrNotEntitled: none of the requested features is one the user may use.
	ErrNotEntitled = errors.New("not entitled to any requested feature")
	// ErrInvalid wraps a malformed request (unknown feature, bad TTL).
	ErrInvalid = errors.New("invalid request")
)

// Signer signs a JWT payload (keys.Manager).
type Signer interface {
	Sign(payload []byte) (string, error)
}

// Recorder remembers minted tokens (store.Store).
type Recorder interface {
	RecordToken(ctx context.Context, t store.IssuedToken) error
}

// Expecter is implemented by a Recorder that group-commits records
// (boltstore): ExpectRecord announces a RecordToken call to come, so a
// commit under way can wait for it; the returned func is called exactly
// once, just before RecordToken or instead of it.
type Expecter interface {
	ExpectRecord() (arrived func())
}

// GlobalIDs derives a user's global user id (*globalid.Deriver).
type GlobalIDs interface {
	GlobalUserID(userID uint64) string
}

// Config configures New.
type Config struct {
	Signer     Signer
	Recorder   Recorder
	GlobalIDs  GlobalIDs // gitlab_global_user_id and x-gitlab-global-user-id
	Issuer     string    // iss: the instance URL
	InstanceID string    // sub and gitlab_instance_id
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	Now        func() time.Time
}

// Minter mints tokens. Safe for concurrent use.
type Minter struct {
	cfg    Config
	expect func() (arrived func()) // the Recorder's ExpectRecord, or a no-op
}

func noExpect() func() { return func() {} }

// New returns a Minter. DefaultTTL defaults to token.DefaultTTL and is
// capped at MaxTTL (required).
func New(cfg Config) (*Minter, error) {
	if cfg.Signer == nil || cfg.Recorder == nil || cfg.GlobalIDs == nil || cfg.Issuer == "" || cfg.InstanceID == "" || cfg.MaxTTL <= 0 {
		return nil, errors.New("minter: Signer, Recorder, GlobalIDs, Issuer, InstanceID and MaxTTL are required")
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = token.DefaultTTL
	}
	cfg.DefaultTTL = min(cfg.DefaultTTL, cfg.MaxTTL)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Minter{cfg: cfg, expect: noExpect}
	if e, ok := cfg.Recorder.(Expecter); ok {
		m.expect = e.ExpectRecord
	}
	return m, nil
}

// Token is a minted token and what the caller forwards with it.
type Token struct {
	JWT      string
	Claims   token.Claims
	Metadata map[string]string
}

// Mint issues a token for u. features empty means every feature u is
// entitled to; ttl zero means the default, and is capped at MaxTTL.
// ErrInvalid (wrapped, with the reason) for an unknown feature or a negative
// ttl; ErrNotEntitled when no requested feature is entitled.
func (m *Minter) Mint(ctx context.Context, u store.User, features []string, ttl time.Duration) (*Token, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("%w: ttl must be positive", ErrInvalid)
	}
	if ttl == 0 {
		ttl = m.cfg.DefaultTTL
	}
	ttl = min(ttl, m.cfg.MaxTTL)
	entitled := map[feature.Feature]bool{}
	for _, f := range u.Features {
		entitled[feature.Feature(f)] = true
	}
	var want []feature.Feature
	if len(features) == 0 {
		want = append(want, feature.All...)
	}
	for _, s := range features {
		f, err := feature.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		want = append(want, f)
	}
	var granted []feature.Feature
	for _, f := range want {
		if entitled[f] {
			granted = append(granted, f)
		}
	}
	if len(granted) == 0 {
		return nil, ErrNotEntitled
	}
	jti, err := uuid.NewRandom()
	if err != nil {
		return nil, err
	}
	// JWT times are whole seconds; truncate so the claims and the response's
	// expire_time agree exactly.
	now := m.cfg.Now().Truncate(time.Second)
	c := token.Claims{
		ID:         jti.String(),
		Issuer:     m.cfg.Issuer,
		Subject:    m.cfg.InstanceID,
		Audience:   token.Audiences{token.Audience},
		IssuedAt:   token.NewNumericDate(now),
		NotBefore:  token.NewNumericDate(now.Add(-token.NotBeforeSkew)),
		Expiry:     token.NewNumericDate(now.Add(ttl.Truncate(time.Second))),
		Realm:      token.RealmSelfManaged,
		Scopes:     feature.Scopes(granted),
		InstanceID: m.cfg.InstanceID,
		// The user the token is for, proven to the gateway; opaque.
		GlobalUserID: m.cfg.GlobalIDs.GlobalUserID(u.ID),
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	jwt, err := m.sign(payload)
	if err != nil {
		return nil, err
	}
	// Record before answering: a token its owner cannot revoke must not exist.
	if err := m.cfg.Recorder.RecordToken(ctx, store.IssuedToken{JTI: c.ID, UserID: u.ID, ExpireTime: c.Expiry.Time()}); err != nil {
		return nil, fmt.Errorf("minter: record token: %w", err)
	}
	md := token.Metadata(jwt, m.cfg.InstanceID, c.GlobalUserID)
	return &Token{JWT: jwt, Claims: c, Metadata: md}, nil
}

// sign signs payload, announcing the record that follows to a group
// committing Recorder for as long as signing takes.
func (m *Minter) sign(payload []byte) (string, error) {
	arrived := m.expect()
	defer arrived()
	return m.cfg.Signer.Sign(payload)
}
