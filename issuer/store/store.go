// Package store defines the issuer's persistent state and the contract every
// storage backend honours. Callers depend only on Store; backends
// (boltstore, and later a shared one for several replicas) pass the
// storetest conformance suite.
//
// Secrets never reach a Store in clear: personal access tokens are stored as
// SHA-256 hashes, and private keys and model API keys as AES-256-GCM sealed
// blobs produced by the caller.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors every backend returns (possibly wrapped; test with errors.Is).
var (
	// ErrNotFound: the named record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a record with that unique name or id exists.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInUse: the record is still referenced (a model by a feature
	// setting or another model's fallback) and cannot be deleted.
	ErrInUse = errors.New("in use")
	// ErrReferenceNotFound: the record refers to another one (a fallback or
	// a feature setting's model) that does not exist.
	ErrReferenceNotFound = errors.New("referenced record not found")
	// ErrCycle: the write would make a chain of references (a model's
	// fallbacks) lead back to where it started.
	ErrCycle = errors.New("reference cycle")
	// ErrLimitExceeded: a create would take the number of records past the
	// limit the caller passed. The error is a *LimitError.
	ErrLimitExceeded = errors.New("limit exceeded")
	// ErrConflict: a conditional write found the state changed since the
	// caller read it (SwapKeys at a stale revision). Nothing was written;
	// read again and decide again.
	ErrConflict = errors.New("changed concurrently")
	// ErrUnavailable: the backend cannot be reached (a shared database that
	// is down or unreachable). The operation may or may not have taken
	// effect if it was a write; retrying later is the remedy.
	ErrUnavailable = errors.New("store unavailable")
)

// LimitError is the ErrLimitExceeded of a create refused because Count
// records of the Kind ("model", "user") already exist and Limit allows no
// more. Count may exceed Limit after the limit was lowered.
type LimitError struct {
	Kind         string
	Count, Limit int
}

// Error implements error, e.g. "model limit reached (10 models, limit 10)".
func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit reached (%d %ss, limit %d)", e.Kind, e.Count, e.Kind, e.Limit)
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// Role is what a user may do at the issuer. Values match the API's Role enum.
type Role int

// Roles.
const (
	RoleUser    Role = 1
	RoleAdmin   Role = 2
	RoleGateway Role = 3
)

// Domain names a watched part of the state; each has its own revision.
type Domain string

// Watched domains.
const (
	DomainKeys        Domain = "keys"
	DomainModels      Domain = "models"
	DomainRevocations Domain = "revocations"
)

// User is a principal of the issuer.
type User struct {
	ID         uint64 // assigned by CreateUser, starting at 1
	Username   string
	Role       Role
	Features   []string // entitled features
	CreateTime time.Time
}

// PAT is a personal access token without its secret.
type PAT struct {
	ID         string
	Hash       []byte // SHA-256 of the secret
	UserID     uint64
	Username   string
	CreateTime time.Time
	ExpireTime time.Time
	RevokeTime time.Time // zero unless revoked
}

// KeyState is a signing key's life-cycle state. Values match the API's enum.
type KeyState int

// Key states.
const (
	KeyPrepared KeyState = 1
	KeyActive   KeyState = 2
	KeyRetired  KeyState = 3
)

// SigningKey is a signing key with its private part sealed by the caller.
type SigningKey struct {
	KID          string
	Alg          string
	State        KeyState
	Sealed       []byte // sealed PKCS #8 private key
	CreateTime   time.Time
	ActivateTime time.Time
	RetireTime   time.Time
	ExpireTime   time.Time
}

// IssuedToken remembers who a minted token belongs to, so its user may
// revoke it. Kept until ExpireTime.
type IssuedToken struct {
	JTI        string
	UserID     uint64
	ExpireTime time.Time
}

// Revocation is a revoked token id, kept until the token would have expired.
type Revocation struct {
	JTI        string
	ExpireTime time.Time
	RevokeTime time.Time
	// Seq is the DomainRevocations revision that added it (set by Revoke).
	Seq uint64
}

// Model is a self-hosted model as configured, API key sealed.
type Model struct {
	Name            string
	Family          string
	Provider        string
	Endpoint        string
	Identifier      string
	SealedAPIKey    []byte // nil when no key is stored
	TrustedNetworks []string
	Fallback        string
	APIVersion      string
	CreateTime      time.Time
	UpdateTime      time.Time
}

// FeatureSetting binds a feature to a model or disables it.
type FeatureSetting struct {
	Feature  string
	Model    string
	Disabled bool
}

// ModelConfig is a consistent snapshot of models and feature settings.
type ModelConfig struct {
	Revision uint64
	Models   []Model          // ordered by name
	Settings []FeatureSetting // ordered by feature
}

// Store is the issuer's state. Every method is safe for concurrent use, and
// a write returns only after it is durable. Every write to a domain's
// records increments that domain's revision in the same transaction.
//
// Every invariant is checked inside the write's own transaction (size
// limits, references, fallback cycles), so concurrent writers cannot both
// pass a check that only one of them may pass: of two creates racing for the
// last place, or two fallback edits that together would close a cycle,
// exactly one succeeds.
type Store interface {
	// InitInstanceID stores id as the instance id unless one is stored, and
	// returns the stored one (so the first start's id wins forever).
	InitInstanceID(ctx context.Context, id string) (string, error)
	// InitSecret stores sealed under name unless a secret of that name is
	// stored, and returns the stored one: the first writer's secret wins
	// forever, so every start and every replica sharing the store derives
	// the same values from it. sealed is already encrypted by the caller.
	InitSecret(ctx context.Context, name string, sealed []byte) ([]byte, error)

	// CreateUser stores u with a fresh ID and returns it.
	// ErrAlreadyExists if the username is taken; ErrLimitExceeded (a
	// *LimitError, Kind "user") if maxUsers > 0 and at least maxUsers users
	// exist. maxUsers 0 means unlimited.
	CreateUser(ctx context.Context, u User, maxUsers int) (User, error)
	// GetUser returns the user by username, or ErrNotFound.
	GetUser(ctx context.Context, username string) (User, error)
	// GetUserByID returns the user by id, or ErrNotFound.
	GetUserByID(ctx context.Context, id uint64) (User, error)
	// ListUsers returns every user ordered by username.
	ListUsers(ctx context.Context) ([]User, error)

	// CreatePAT stores p. ErrNotFound if its user does not exist;
	// ErrAlreadyExists if its ID or Hash is taken.
	CreatePAT(ctx context.Context, p PAT) error
	// GetPATByHash returns the token with that hash, or ErrNotFound.
	GetPATByHash(ctx context.Context, hash []byte) (PAT, error)
	// RevokePAT sets RevokeTime (once; a second call keeps the first time)
	// and returns the token. ErrNotFound if absent.
	RevokePAT(ctx context.Context, id string, at time.Time) (PAT, error)

	// ListKeys returns every signing key and the DomainKeys revision.
	ListKeys(ctx context.Context) ([]SigningKey, uint64, error)
	// ReplaceKeys atomically replaces the whole key set and returns the new
	// DomainKeys revision.
	ReplaceKeys(ctx context.Context, keys []SigningKey) (uint64, error)
	// SwapKeys replaces the whole key set like ReplaceKeys, but only if the
	// DomainKeys revision is still ifRevision (what ListKeys returned), and
	// returns the new revision. ErrConflict if another writer changed the
	// keys since: nothing is written. Of several replicas deciding the same
	// rotation from the same stored keys, exactly one succeeds.
	SwapKeys(ctx context.Context, keys []SigningKey, ifRevision uint64) (uint64, error)

	// RecordToken remembers a minted token. ErrAlreadyExists on a reused jti.
	RecordToken(ctx context.Context, t IssuedToken) error
	// GetToken returns a remembered token, or ErrNotFound (also after it
	// has been pruned).
	GetToken(ctx context.Context, jti string) (IssuedToken, error)
	// Revoke stores r with a new Seq and returns it with created=true; if
	// the jti is already revoked it returns the stored revocation and false.
	Revoke(ctx context.Context, r Revocation) (stored Revocation, created bool, err error)
	// ListRevocations returns every stored revocation ordered by Seq, and
	// the DomainRevocations revision.
	ListRevocations(ctx context.Context) ([]Revocation, uint64, error)
	// PruneTokens deletes remembered tokens and revocations whose
	// ExpireTime is not after now, and returns how many revocations went.
	PruneTokens(ctx context.Context, now time.Time) (int, error)

	// CreateModel stores m. ErrAlreadyExists if the name is taken;
	// ErrCycle if m.Fallback is m.Name; ErrReferenceNotFound if m.Fallback
	// names no model; ErrLimitExceeded (a *LimitError, Kind "model") if
	// maxModels > 0 and at least maxModels models exist. maxModels 0 means
	// unlimited.
	CreateModel(ctx context.Context, m Model, maxModels int) error
	// UpdateModel reads the model named name, passes it to update and stores
	// what update returns, in one transaction, and returns the stored model.
	// ErrNotFound if absent. An error from update is returned unchanged and
	// nothing is written. The result must keep Name (else an error, nothing
	// written); ErrReferenceNotFound if its Fallback names no model; ErrCycle
	// if its fallback chain leads back to it. update may run more than once
	// (a backend may retry a conflicting transaction): it must depend only on
	// old and have no side effects.
	UpdateModel(ctx context.Context, name string, update func(old Model) (Model, error)) (Model, error)
	// GetModel returns a model, or ErrNotFound.
	GetModel(ctx context.Context, name string) (Model, error)
	// DeleteModel removes a model. ErrNotFound if absent; ErrInUse while a
	// feature setting or another model's fallback names it.
	DeleteModel(ctx context.Context, name string) error
	// SetFeatureSetting stores s (replacing the feature's previous one).
	// ErrReferenceNotFound if s.Model is set and names no model.
	SetFeatureSetting(ctx context.Context, s FeatureSetting) error
	// ModelConfig returns every model and feature setting at one revision.
	ModelConfig(ctx context.Context) (ModelConfig, error)

	// Revision returns a domain's current revision (0 before any write).
	Revision(ctx context.Context, d Domain) (uint64, error)

	// Close releases the store. Other methods must not be called after.
	Close() error
}
