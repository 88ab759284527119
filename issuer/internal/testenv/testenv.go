// Package testenv runs the whole issuer gRPC API in process over bufconn,
// on a real boltstore in a temporary directory, with an injected clock and
// the log captured, for handler tests.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/api/bounds"
	"github.com/airlock-dev/airlock/issuer/api/keysvc"
	"github.com/airlock-dev/airlock/issuer/api/limits"
	"github.com/airlock-dev/airlock/issuer/api/modelsvc"
	"github.com/airlock-dev/airlock/issuer/api/tokensvc"
	"github.com/airlock-dev/airlock/issuer/api/usersvc"
	"github.com/airlock-dev/airlock/issuer/globalid"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/keys"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/rpcserver"
)

// Issuer is the iss of test tokens.
const Issuer = "https://gitlab.test"

// Start is the test clock's initial time.
var Start = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

// Clock is a settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock forward.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// SafeBuffer is a goroutine-safe log sink.
type SafeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SafeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written.
func (s *SafeBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Env is a running issuer API.
type Env struct {
	Dir        string
	Store      *boltstore.Store
	KEK        *kek.KEK
	Keys       *keys.Manager
	Clock      *Clock
	Conn       *grpc.ClientConn
	Logs       *SafeBuffer
	InstanceID string
	GlobalIDs  *globalid.Deriver
	// PATs of the seeded users.
	Admin, User, Gateway, Chat, Nothing string
	// Users by username.
	Users map[string]store.User
}

// Options tune New.
type Options struct {
	Alg string // default ES256 (fast); RS256 where interoperability matters
	Dir string // reuse a data directory (restart tests)
	// Per-caller limits, as the issuer's --mint-rate-per-user and
	// --max-watches-per-caller (0: unlimited).
	MintRatePerUser     int
	MaxWatchesPerCaller int
	// Store size limits, as --max-models and --max-users (0: unlimited).
	MaxModels int
	MaxUsers  int
}

// New starts the API and seeds users: admin (ROLE_ADMIN), user (ROLE_USER,
// every feature), gateway (ROLE_GATEWAY), chat (ROLE_USER, duo_chat only),
// nothing (ROLE_USER, no features). Everything stops at test cleanup.
func New(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Alg == "" {
		o.Alg = keys.ES256
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	e := &Env{Dir: o.Dir, Clock: &Clock{t: Start}, Logs: &SafeBuffer{}, Users: map[string]store.User{}}
	ctx := context.Background()
	log := zerolog.New(e.Logs).Level(zerolog.DebugLevel)
	var err error
	e.KEK, err = kek.New(bytes.Repeat([]byte{9}, kek.Size))
	must(t, err)
	e.Store, err = boltstore.Open(o.Dir)
	must(t, err)
	t.Cleanup(func() {
		if err := e.Store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	e.InstanceID, err = e.Store.InitInstanceID(ctx, "5b3a1c1e-8d7f-4a39-9c52-3f8e0c1d2b7a")
	must(t, err)
	e.Keys, err = keys.New(ctx, keys.Config{Store: e.Store, KEK: e.KEK, Alg: o.Alg, MaxTokenTTL: time.Hour, Now: e.Clock.Now, Logger: log})
	must(t, err)
	guKey, err := globalid.LoadKey(ctx, e.Store, e.KEK)
	must(t, err)
	e.GlobalIDs, err = globalid.New(guKey, e.InstanceID)
	must(t, err)
	mint, err := minter.New(minter.Config{Signer: e.Keys, Recorder: e.Store, GlobalIDs: e.GlobalIDs, Issuer: Issuer, InstanceID: e.InstanceID, MaxTTL: time.Hour, Now: e.Clock.Now})
	must(t, err)
	tokens, err := tokensvc.New(ctx, tokensvc.Config{Minter: mint, Store: e.Store, Now: e.Clock.Now, Logger: log,
		MintRate: limits.NewRate(o.MintRatePerUser)})
	must(t, err)
	models, err := modelsvc.New(ctx, modelsvc.Config{Store: e.Store, KEK: e.KEK, Now: e.Clock.Now, Logger: log, MaxModels: o.MaxModels})
	must(t, err)
	srv, _ := rpcserver.New(rpcserver.Options{
		UnaryAfterAuth:  []grpc.UnaryServerInterceptor{bounds.Unary},
		StreamAfterAuth: []grpc.StreamServerInterceptor{limits.NewStreams(o.MaxWatchesPerCaller).Interceptor()},
		Logger:          log,
		Auth:            authn.New(authn.NewPATs(e.Store, e.Clock.Now, nil)),
		Public: func(m string) bool {
			return m == keysvc.PublicMethods[0] || m == keysvc.PublicMethods[1]
		},
	})
	keysvc.New(keysvc.Config{Keys: e.Keys, Logger: log}).Register(srv)
	tokens.Register(srv)
	models.Register(srv)
	usersvc.New(usersvc.Config{Store: e.Store, Now: e.Clock.Now, Logger: log, MaxUsers: o.MaxUsers}).Register(srv)

	lis := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	e.Conn, err = grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { e.Conn.Close() })

	all := []string{string(feature.CodeCompletions), string(feature.CodeGenerations), string(feature.DuoChat)}
	for _, u := range []struct {
		name string
		role store.Role
		fs   []string
		pat  *string
	}{
		{"admin", store.RoleAdmin, nil, &e.Admin},
		{"user", store.RoleUser, all, &e.User},
		{"gateway", store.RoleGateway, nil, &e.Gateway},
		{"chat", store.RoleUser, []string{"duo_chat"}, &e.Chat},
		{"nothing", store.RoleUser, nil, &e.Nothing},
	} {
		created, err := e.Store.GetUser(ctx, u.name)
		if errors.Is(err, store.ErrNotFound) {
			created, err = e.Store.CreateUser(ctx, store.User{Username: u.name, Role: u.role, Features: u.fs, CreateTime: Start}, 0)
		}
		must(t, err)
		e.Users[u.name] = created
		_, secret, err := pat.Issue(ctx, e.Store, created, Start, Start.Add(10*365*24*time.Hour))
		must(t, err)
		*u.pat = secret
	}
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Ctx returns a context that sends pat as the bearer credential ("" sends none).
func Ctx(pat string) context.Context {
	if pat == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+pat)
}

// Clients of the four services.
func (e *Env) Tokens() issuerv1.TokenServiceClient { return issuerv1.NewTokenServiceClient(e.Conn) }

// KeysClient returns a KeyService client.
func (e *Env) KeysClient() issuerv1.KeyServiceClient { return issuerv1.NewKeyServiceClient(e.Conn) }

// Models returns a ModelService client.
func (e *Env) Models() issuerv1.ModelServiceClient { return issuerv1.NewModelServiceClient(e.Conn) }

// UsersClient returns a UserService client.
func (e *Env) UsersClient() issuerv1.UserServiceClient { return issuerv1.NewUserServiceClient(e.Conn) }
