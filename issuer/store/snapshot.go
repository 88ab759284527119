package store

// Snapshot is the whole state of a store, as one backend exports it and
// another imports it (issuer migrate-store). It carries what the Store
// methods cannot recreate: user ids, the last assigned user id, and the
// revisions, which must not go backwards for gateways that watched the old
// store. Secrets stay as the store holds them: PAT hashes and sealed blobs.
type Snapshot struct {
	InstanceID  string
	LastUserID  uint64 // the last id CreateUser assigned
	Revisions   map[Domain]uint64
	Users       []User
	PATs        []PAT
	Keys        []SigningKey // in the stored order
	Tokens      []IssuedToken
	Revocations []Revocation
	Models      []Model
	Settings    []FeatureSetting
	// Secrets are InitSecret's values by name, sealed as stored.
	Secrets map[string][]byte
}
