// Package catalog is the gateway's copy of the issuer's model configuration:
// which model serves each feature, and how to reach it (endpoint, API key,
// trusted networks). It follows ModelService.WatchModels, reconnecting with
// jittered backoff, and answers lookups from an immutable snapshot without
// locks.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/internal/follow"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Lookup errors.
var (
	// ErrNotReady: no configuration received from the issuer yet (Unavailable).
	ErrNotReady = errors.New("model configuration not received from the issuer yet")
	// ErrDisabled: the administrator disabled the feature (FailedPrecondition).
	ErrDisabled = errors.New("feature is disabled")
	// ErrNoModel: no model is bound to the feature (FailedPrecondition).
	ErrNoModel = errors.New("no model is configured for the feature")
)

// maxChain bounds primary + fallbacks, so a misconfigured cycle cannot loop.
const maxChain = 3

// Target is one model to try, with the networks the gateway may dial for it.
type Target struct {
	Model   adapter.Model
	Trusted []string
}

type snapshot struct {
	revision uint64
	models   map[string]*issuerv1.Model
	settings map[feature.Feature]*issuerv1.FeatureSetting
}

// Catalog holds the latest configuration.
type Catalog struct {
	client  issuerv1.ModelServiceClient
	opts    Options
	log     zerolog.Logger
	snap    atomic.Pointer[snapshot]
	changed func(revision uint64)
}

// Options configure New.
type Options struct {
	Logger zerolog.Logger
	// OnChange is called after each new revision is applied.
	OnChange func(revision uint64)
	// MinBackoff and MaxBackoff bound the jittered reconnect backoff
	// (defaults: the same as every watch of the issuer, 200 ms and 5 s).
	MinBackoff, MaxBackoff time.Duration
	// Sleep waits between reconnects (d or until ctx is done, reporting
	// whether d elapsed); nil means real time. Tests inject a fake clock.
	Sleep func(ctx context.Context, d time.Duration) bool
}

// New returns a catalog fed by client (which must carry the gateway's
// credentials). Call Run to start following the issuer.
func New(client issuerv1.ModelServiceClient, o Options) *Catalog {
	return &Catalog{client: client, opts: o, log: o.Logger, changed: o.OnChange}
}

// Ready reports whether a configuration has been received.
func (c *Catalog) Ready() bool { return c.snap.Load() != nil }

// Revision returns the revision held (0 before the first).
func (c *Catalog) Revision() uint64 {
	if s := c.snap.Load(); s != nil {
		return s.revision
	}
	return 0
}

// Apply installs a configuration snapshot. Run calls it for every message;
// tests call it directly.
func (c *Catalog) Apply(m *issuerv1.WatchModelsResponse) {
	s := &snapshot{
		revision: m.GetRevision(),
		models:   make(map[string]*issuerv1.Model, len(m.GetModels())),
		settings: make(map[feature.Feature]*issuerv1.FeatureSetting, len(m.GetSettings())),
	}
	for _, mod := range m.GetModels() {
		s.models[mod.GetName()] = mod
	}
	for _, st := range m.GetSettings() {
		s.settings[feature.Feature(st.GetFeature())] = st
	}
	c.snap.Store(s)
	if c.changed != nil {
		c.changed(s.revision)
	}
}

// Route returns the models to try for f: the bound model, then its fallback
// chain (at most maxChain, no repeats). Errors: ErrNotReady, ErrDisabled,
// ErrNoModel (each wrapped with the feature name).
func (c *Catalog) Route(f feature.Feature) ([]Target, error) {
	s := c.snap.Load()
	if s == nil {
		return nil, ErrNotReady
	}
	st, ok := s.settings[f]
	if !ok || (!st.GetDisabled() && st.GetModel() == "") {
		return nil, fmt.Errorf("%w %s", ErrNoModel, f)
	}
	if st.GetDisabled() {
		return nil, fmt.Errorf("%w: %s", ErrDisabled, f)
	}
	var out []Target
	seen := map[string]bool{}
	for name := st.GetModel(); name != "" && !seen[name] && len(out) < maxChain; {
		m, ok := s.models[name]
		if !ok {
			break
		}
		seen[name] = true
		out = append(out, Target{
			Model: adapter.Model{
				Name: m.GetName(), Family: m.GetFamily(), Provider: m.GetProvider(),
				Endpoint: m.GetEndpoint(), Identifier: m.GetIdentifier(),
				APIKey: m.GetApiKey(), APIVersion: m.GetApiVersion(),
			},
			Trusted: m.GetTrustedNetworks(),
		})
		name = m.GetFallbackModel()
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w %s", ErrNoModel, f)
	}
	return out, nil
}

// Run follows WatchModels until ctx is done, reconnecting with the jittered
// backoff every watch of the issuer uses (gateway/internal/follow). The last
// configuration stays in force while the issuer is unreachable.
func (c *Catalog) Run(ctx context.Context) {
	follow.Run(ctx, follow.Config{What: "model configuration watch", MinBackoff: c.opts.MinBackoff, MaxBackoff: c.opts.MaxBackoff,
		Sleep: c.opts.Sleep, Logger: c.log}, c.watch)
}

// watch runs one WatchModels stream until it ends; it reports whether any
// message arrived.
func (c *Catalog) watch(ctx context.Context) (delivered bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// WaitForReady: back as soon as the issuer is (see keyset).
	stream, err := c.client.WatchModels(ctx, &issuerv1.WatchModelsRequest{KnownRevision: c.Revision()}, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return delivered, err
		}
		delivered = true
		if m.GetRevision() != 0 && m.GetRevision() == c.Revision() && c.Ready() {
			continue
		}
		c.Apply(m)
		c.log.Info().Uint64("revision", m.GetRevision()).Int("models", len(m.GetModels())).Msg("model configuration updated")
	}
}
