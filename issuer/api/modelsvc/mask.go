package modelsvc

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/airlock-dev/airlock/issuer/modelcheck"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// maskField is a Model field an update mask may name: how its new value is
// copied, and whether a request sets it (for the absent-mask default).
type maskField struct {
	path string
	copy func(dst *store.Model, src store.Model)
	set  func(*issuerv1.Model) bool
}

// maskable are the fields an update mask may name besides api_key, in
// proto order.
var maskable = []maskField{
	{"family", func(d *store.Model, s store.Model) { d.Family = s.Family }, func(m *issuerv1.Model) bool { return m.GetFamily() != "" }},
	{"provider", func(d *store.Model, s store.Model) { d.Provider = s.Provider }, func(m *issuerv1.Model) bool { return m.GetProvider() != "" }},
	{"endpoint", func(d *store.Model, s store.Model) { d.Endpoint = s.Endpoint }, func(m *issuerv1.Model) bool { return m.GetEndpoint() != "" }},
	{"identifier", func(d *store.Model, s store.Model) { d.Identifier = s.Identifier }, func(m *issuerv1.Model) bool { return m.GetIdentifier() != "" }},
	{"trusted_networks", func(d *store.Model, s store.Model) { d.TrustedNetworks = s.TrustedNetworks },
		func(m *issuerv1.Model) bool { return len(m.GetTrustedNetworks()) > 0 }},
	{"fallback_model", func(d *store.Model, s store.Model) { d.Fallback = s.Fallback }, func(m *issuerv1.Model) bool { return m.GetFallbackModel() != "" }},
	{"api_version", func(d *store.Model, s store.Model) { d.APIVersion = s.APIVersion }, func(m *issuerv1.Model) bool { return m.GetApiVersion() != "" }},
}

const pathAPIKey = "api_key"

// keyChange is what an update does to the stored API key.
type keyChange int

const (
	keyKeep keyChange = iota
	keySet
	keyClear
)

// updatePlan is a validated update mask: the fields to copy and what
// happens to the API key.
type updatePlan struct {
	fields []string // maskable paths, in proto order
	key    keyChange
}

// apply returns old with the planned fields taken from m and the key
// changed; sealed is the new key when plan.key is keySet.
func (p updatePlan) apply(old, m store.Model, sealed []byte) store.Model {
	upd := old
	for _, f := range maskable {
		if slices.Contains(p.fields, f.path) {
			f.copy(&upd, m)
		}
	}
	switch p.key {
	case keySet:
		upd.SealedAPIKey = sealed
	case keyClear:
		upd.SealedAPIKey = nil
	}
	return upd
}

func maskableNames() string {
	names := make([]string, 0, len(maskable)+1)
	for _, f := range maskable[:4] {
		names = append(names, f.path)
	}
	names = append(names, pathAPIKey)
	for _, f := range maskable[4:] {
		names = append(names, f.path)
	}
	return strings.Join(names, ", ")
}

// planUpdate reads an UpdateModelRequest's mask with AIP-134 semantics (see
// the proto): absent or empty means the fields set in pm, "*" every field
// but api_key. Every refusal is a *modelcheck.FieldError on update_mask.
func planUpdate(mask *fieldmaskpb.FieldMask, pm *issuerv1.Model, clearKey bool) (updatePlan, error) {
	var p updatePlan
	paths := mask.GetPaths()
	keyNamed := false
	switch {
	case len(paths) == 0:
		for _, f := range maskable {
			if f.set(pm) {
				p.fields = append(p.fields, f.path)
			}
		}
	case slices.Contains(paths, "*"):
		if len(paths) != 1 {
			return p, &modelcheck.FieldError{Field: "update_mask", Msg: `"*" must be the only path`}
		}
		for _, f := range maskable {
			p.fields = append(p.fields, f.path)
		}
	default:
		for _, path := range paths {
			switch path {
			case pathAPIKey:
				keyNamed = true
				continue
			case "name":
				return p, &modelcheck.FieldError{Field: "update_mask", Msg: `"name" cannot be updated: it names the model to update`}
			case "has_api_key", "create_time", "update_time":
				return p, &modelcheck.FieldError{Field: "update_mask", Msg: fmt.Sprintf("%q is output only", path)}
			}
			if !slices.ContainsFunc(maskable, func(f maskField) bool { return f.path == path }) {
				return p, &modelcheck.FieldError{Field: "update_mask", Msg: fmt.Sprintf("unknown field %q: want one of %s", path, maskableNames())}
			}
		}
		for _, f := range maskable {
			if slices.Contains(paths, f.path) {
				p.fields = append(p.fields, f.path)
			}
		}
	}
	explicit := len(paths) > 0 && paths[0] != "*"
	switch {
	case pm.GetApiKey() != "" && explicit && !keyNamed:
		// Ignoring a secret the caller meant to store would fail open.
		return p, &modelcheck.FieldError{Field: "model.api_key", Msg: "given, but update_mask does not name api_key"}
	case pm.GetApiKey() != "":
		p.key = keySet
	case clearKey || keyNamed:
		p.key = keyClear
	}
	return p, nil
}
