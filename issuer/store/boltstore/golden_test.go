package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-dev/airlock/issuer/store"
)

// testdata/v0 holds what the first release (schema 0, untagged JSON of the
// domain structs) wrote: each record's bytes, and a whole database file.
// These values are what was written.
var (
	g0 = time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	g1 = time.Date(2026, 2, 3, 4, 5, 6, 0, time.FixedZone("", 3600))

	goldenUsers = []store.User{
		{ID: 1, Username: "alice", Role: store.RoleAdmin, Features: []string{"duo_chat", "code_completions"}, CreateTime: g0},
		{ID: 2, Username: "bob", Role: store.RoleUser, CreateTime: g0},
	}
	goldenPATs = []store.PAT{
		{ID: "pat-1", Hash: []byte{0xde, 0xad, 0xbe, 0xef}, UserID: 1, Username: "alice", CreateTime: g0, ExpireTime: g1},
		{ID: "pat-2", Hash: []byte{1, 2}, UserID: 1, Username: "alice", CreateTime: g0, ExpireTime: g1, RevokeTime: g1},
	}
	goldenKeys = []store.SigningKey{
		{KID: "k1", Alg: "RS256", State: store.KeyActive, Sealed: []byte{9, 8, 7}, CreateTime: g0, ActivateTime: g0, ExpireTime: g1},
		{KID: "k0", Alg: "ES256", State: store.KeyRetired, Sealed: []byte{6}, CreateTime: g0, ActivateTime: g0, RetireTime: g1, ExpireTime: g1},
	}
	goldenToken      = store.IssuedToken{JTI: "jti-1", UserID: 1, ExpireTime: g1}
	goldenRevocation = store.Revocation{JTI: "jti-1", ExpireTime: g1, RevokeTime: g0, Seq: 1}
	goldenModels     = []store.Model{
		{Name: "azure", Family: "gpt", Provider: "azure_openai", Endpoint: "https://x.openai.azure.com", Identifier: "dep",
			Fallback: "base", APIVersion: "2024-02-01", CreateTime: g0, UpdateTime: g0},
		{Name: "base", Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.0.0.1:8000/v1", Identifier: "mistralai/Mistral-7B",
			SealedAPIKey: []byte{5, 5, 5}, TrustedNetworks: []string{"10.0.0.0/8"}, CreateTime: g0, UpdateTime: g1},
	}
	goldenSettings = []store.FeatureSetting{
		{Feature: "code_completions", Disabled: true},
		{Feature: "duo_chat", Model: "base"},
	}
)

// equal compares with time.Time.Equal semantics, through a normalising
// JSON round trip of both sides in UTC.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	norm := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(utc(x))
		return string(out)
	}
	if g, w := norm(got), norm(want); g != w {
		t.Fatalf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// utc rewrites every RFC 3339 string in a decoded JSON value to UTC.
func utc(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = utc(e)
		}
	case []any:
		for i, e := range x {
			x[i] = utc(e)
		}
	case string:
		if tm, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return tm.UTC().Format(time.RFC3339Nano)
		}
	}
	return v
}

// TestRecordsDecodeTheFirstReleasesBytes decodes every golden record into
// the record types, compares it with what was written, and checks that
// encoding it again gives the same bytes (so an older issuer can still read
// what this one writes).
func TestRecordsDecodeTheFirstReleasesBytes(t *testing.T) {
	type golden struct {
		file   string
		decode func([]byte) (any, any, error) // record, domain value
		want   any
	}
	one := func(rec interface{ domainAny() any }) func([]byte) (any, any, error) {
		return func(b []byte) (any, any, error) {
			r := reflect.New(reflect.TypeOf(rec)).Interface()
			if err := json.Unmarshal(b, r); err != nil {
				return nil, nil, err
			}
			v := reflect.ValueOf(r).Elem().Interface().(interface{ domainAny() any })
			return v, v.domainAny(), nil
		}
	}
	tests := []golden{
		{"users/alice.json", one(userRecord{}), goldenUsers[0]},
		{"users/bob.json", one(userRecord{}), goldenUsers[1]},
		{"pats/pat-1.json", one(patRecord{}), goldenPATs[0]},
		{"pats/pat-2.json", one(patRecord{}), goldenPATs[1]},
		{"keys/set.json", one(keySetRecord{}), goldenKeys},
		{"tokens/jti-1.json", one(issuedTokenRecord{}), goldenToken},
		{"revocations/jti-1.json", one(revocationRecord{}), goldenRevocation},
		{"models/azure.json", one(modelRecord{}), goldenModels[0]},
		{"models/base.json", one(modelRecord{}), goldenModels[1]},
		{"settings/code_completions.json", one(featureSettingRecord{}), goldenSettings[0]},
		{"settings/duo_chat.json", one(featureSettingRecord{}), goldenSettings[1]},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata/v0", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields() // every field the first release wrote has a home
			rec, dom, err := tc.decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			if err := dec.Decode(reflect.New(reflect.TypeOf(rec)).Interface()); err != nil {
				t.Fatalf("strict decode: %v", err)
			}
			if !reflect.DeepEqual(reflect.TypeOf(dom), reflect.TypeOf(tc.want)) {
				t.Fatalf("decoded a %T, want a %T", dom, tc.want)
			}
			equal(t, "decoded", dom, tc.want)
			again, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, raw) {
				t.Fatalf("re-encoded record differs from the first release's bytes:\n got %s\nwant %s", again, raw)
			}
		})
	}
}

func (r userRecord) domainAny() any           { return r.domain() }
func (r patRecord) domainAny() any            { return r.domain() }
func (r keySetRecord) domainAny() any         { return r.domain() }
func (r issuedTokenRecord) domainAny() any    { return r.domain() }
func (r revocationRecord) domainAny() any     { return r.domain() }
func (r modelRecord) domainAny() any          { return r.domain() }
func (r featureSettingRecord) domainAny() any { return r.domain() }

// copyGoldenDB returns a data directory holding the first release's file.
func copyGoldenDB(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/v0/issuer.db")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenUpgradesTheFirstReleasesDatabase(t *testing.T) {
	ctx := context.Background()
	dir := copyGoldenDB(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	id, err := s.InitInstanceID(ctx, "other")
	if err != nil || id != "inst-1" {
		t.Fatalf("instance id %q %v, want inst-1", id, err)
	}
	users, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "users", users, goldenUsers)
	byID, err := s.GetUserByID(ctx, 2)
	if err != nil || byID.Username != "bob" {
		t.Fatalf("GetUserByID(2) = %+v %v", byID, err)
	}
	for _, want := range goldenPATs {
		p, err := s.GetPATByHash(ctx, want.Hash)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "pat "+want.ID, p, want)
	}
	keys, rev, err := s.ListKeys(ctx)
	if err != nil || rev != 1 {
		t.Fatalf("ListKeys rev %d %v", rev, err)
	}
	equal(t, "keys", keys, goldenKeys)
	tok, err := s.GetToken(ctx, "jti-1")
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "token", tok, goldenToken)
	revs, _, err := s.ListRevocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "revocations", revs, []store.Revocation{goldenRevocation})
	cfg, err := s.ModelConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "models", cfg.Models, goldenModels)
	equal(t, "settings", cfg.Settings, goldenSettings)

	// The counts the limits read were computed from the old buckets, and
	// the next user gets the next id.
	if err := s.CreateModel(ctx, store.Model{Name: "third"}, 2); !errors.Is(err, store.ErrLimitExceeded) {
		t.Fatalf("third model with limit 2 over an upgraded file: %v", err)
	}
	if _, err := s.CreateUser(ctx, store.User{Username: "carol"}, 2); !errors.Is(err, store.ErrLimitExceeded) {
		t.Fatalf("third user with limit 2 over an upgraded file: %v", err)
	}
	carol, err := s.CreateUser(ctx, store.User{Username: "carol"}, 3)
	if err != nil || carol.ID != 3 {
		t.Fatalf("CreateUser after upgrade = %+v %v, want id 3", carol, err)
	}
	var v uint64
	if err := s.db.View(func(tx *bolt.Tx) error { v = readU64(tx.Bucket(bMeta), kSchemaVersion); return nil }); err != nil || v != schemaVersion {
		t.Fatalf("stored schema version %d %v, want %d", v, err, schemaVersion)
	}
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kSchemaVersion, u64(schemaVersion+1)) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a schema %d file = %v, want ErrSchemaTooNew", schemaVersion+1, err)
	}
	t.Log(err)
}
