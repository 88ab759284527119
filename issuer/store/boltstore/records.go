package boltstore

import (
	"time"

	"github.com/airlock-dev/airlock/issuer/store"
)

// The on-disk format: one JSON record per value. These types, not the
// domain structs in package store, are what the file holds, so a change to
// a domain struct cannot silently orphan stored data. The JSON names are the
// Go field names the first release wrote (it marshalled the domain structs
// untagged), so schema 0 and schema 1 records are the same bytes; the golden
// test in testdata/v0 holds that release's records. Renaming a tag is a
// schema change: bump schemaVersion and migrate in migrate.

type userRecord struct {
	ID         uint64    `json:"ID"`
	Username   string    `json:"Username"`
	Role       int       `json:"Role"`
	Features   []string  `json:"Features"`
	CreateTime time.Time `json:"CreateTime"`
}

func userToRecord(u store.User) userRecord {
	return userRecord{ID: u.ID, Username: u.Username, Role: int(u.Role), Features: u.Features, CreateTime: u.CreateTime}
}

func (r userRecord) domain() store.User {
	return store.User{ID: r.ID, Username: r.Username, Role: store.Role(r.Role), Features: r.Features, CreateTime: r.CreateTime}
}

type patRecord struct {
	ID         string    `json:"ID"`
	Hash       []byte    `json:"Hash"`
	UserID     uint64    `json:"UserID"`
	Username   string    `json:"Username"`
	CreateTime time.Time `json:"CreateTime"`
	ExpireTime time.Time `json:"ExpireTime"`
	RevokeTime time.Time `json:"RevokeTime"`
}

func patToRecord(p store.PAT) patRecord {
	return patRecord{ID: p.ID, Hash: p.Hash, UserID: p.UserID, Username: p.Username, CreateTime: p.CreateTime, ExpireTime: p.ExpireTime, RevokeTime: p.RevokeTime}
}

func (r patRecord) domain() store.PAT {
	return store.PAT{ID: r.ID, Hash: r.Hash, UserID: r.UserID, Username: r.Username, CreateTime: r.CreateTime, ExpireTime: r.ExpireTime, RevokeTime: r.RevokeTime}
}

type signingKeyRecord struct {
	KID          string    `json:"KID"`
	Alg          string    `json:"Alg"`
	State        int       `json:"State"`
	Sealed       []byte    `json:"Sealed"`
	CreateTime   time.Time `json:"CreateTime"`
	ActivateTime time.Time `json:"ActivateTime"`
	RetireTime   time.Time `json:"RetireTime"`
	ExpireTime   time.Time `json:"ExpireTime"`
}

// keySetRecord is the whole key set, stored under one key. nil encodes as
// null, as the first release wrote an empty set.
type keySetRecord []signingKeyRecord

func keySetToRecord(keys []store.SigningKey) keySetRecord {
	if keys == nil {
		return nil
	}
	out := make(keySetRecord, len(keys))
	for i, k := range keys {
		out[i] = signingKeyRecord{KID: k.KID, Alg: k.Alg, State: int(k.State), Sealed: k.Sealed, CreateTime: k.CreateTime,
			ActivateTime: k.ActivateTime, RetireTime: k.RetireTime, ExpireTime: k.ExpireTime}
	}
	return out
}

func (r keySetRecord) domain() []store.SigningKey {
	if r == nil {
		return nil
	}
	out := make([]store.SigningKey, len(r))
	for i, k := range r {
		out[i] = store.SigningKey{KID: k.KID, Alg: k.Alg, State: store.KeyState(k.State), Sealed: k.Sealed, CreateTime: k.CreateTime,
			ActivateTime: k.ActivateTime, RetireTime: k.RetireTime, ExpireTime: k.ExpireTime}
	}
	return out
}

type issuedTokenRecord struct {
	JTI        string    `json:"JTI"`
	UserID     uint64    `json:"UserID"`
	ExpireTime time.Time `json:"ExpireTime"`
}

func issuedTokenToRecord(t store.IssuedToken) issuedTokenRecord {
	return issuedTokenRecord{JTI: t.JTI, UserID: t.UserID, ExpireTime: t.ExpireTime}
}

func (r issuedTokenRecord) domain() store.IssuedToken {
	return store.IssuedToken{JTI: r.JTI, UserID: r.UserID, ExpireTime: r.ExpireTime}
}

type revocationRecord struct {
	JTI        string    `json:"JTI"`
	ExpireTime time.Time `json:"ExpireTime"`
	RevokeTime time.Time `json:"RevokeTime"`
	Seq        uint64    `json:"Seq"`
}

func revocationToRecord(r store.Revocation) revocationRecord {
	return revocationRecord{JTI: r.JTI, ExpireTime: r.ExpireTime, RevokeTime: r.RevokeTime, Seq: r.Seq}
}

func (r revocationRecord) domain() store.Revocation {
	return store.Revocation{JTI: r.JTI, ExpireTime: r.ExpireTime, RevokeTime: r.RevokeTime, Seq: r.Seq}
}

// expiryRecord is the part of a token or revocation record pruning reads.
type expiryRecord struct {
	ExpireTime time.Time `json:"ExpireTime"`
}

type modelRecord struct {
	Name            string    `json:"Name"`
	Family          string    `json:"Family"`
	Provider        string    `json:"Provider"`
	Endpoint        string    `json:"Endpoint"`
	Identifier      string    `json:"Identifier"`
	SealedAPIKey    []byte    `json:"SealedAPIKey"`
	TrustedNetworks []string  `json:"TrustedNetworks"`
	Fallback        string    `json:"Fallback"`
	APIVersion      string    `json:"APIVersion"`
	CreateTime      time.Time `json:"CreateTime"`
	UpdateTime      time.Time `json:"UpdateTime"`
}

func modelToRecord(m store.Model) modelRecord {
	return modelRecord{Name: m.Name, Family: m.Family, Provider: m.Provider, Endpoint: m.Endpoint, Identifier: m.Identifier,
		SealedAPIKey: m.SealedAPIKey, TrustedNetworks: m.TrustedNetworks, Fallback: m.Fallback, APIVersion: m.APIVersion,
		CreateTime: m.CreateTime, UpdateTime: m.UpdateTime}
}

func (r modelRecord) domain() store.Model {
	return store.Model{Name: r.Name, Family: r.Family, Provider: r.Provider, Endpoint: r.Endpoint, Identifier: r.Identifier,
		SealedAPIKey: r.SealedAPIKey, TrustedNetworks: r.TrustedNetworks, Fallback: r.Fallback, APIVersion: r.APIVersion,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime}
}

type featureSettingRecord struct {
	Feature  string `json:"Feature"`
	Model    string `json:"Model"`
	Disabled bool   `json:"Disabled"`
}

func featureSettingToRecord(fs store.FeatureSetting) featureSettingRecord {
	return featureSettingRecord{Feature: fs.Feature, Model: fs.Model, Disabled: fs.Disabled}
}

func (r featureSettingRecord) domain() store.FeatureSetting {
	return store.FeatureSetting{Feature: r.Feature, Model: r.Model, Disabled: r.Disabled}
}
