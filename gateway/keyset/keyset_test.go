package keyset

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var (
	rsaOnce sync.Once
	rsaKeys []*rsa.PrivateKey
)

// pubJWK returns the public JWK of the i-th shared RSA test key, kid "k<i>".
func pubJWK(t testing.TB, i int) jwk.Key {
	t.Helper()
	rsaOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys = append(rsaKeys, k)
		}
	})
	k, err := jwk.FromRaw(&rsaKeys[i].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, "k"+string(rune('0'+i)))
	_ = k.Set(jwk.AlgorithmKey, "RS256")
	_ = k.Set(jwk.KeyUsageKey, "sig")
	return k
}

func jwksJSON(t testing.TB, keys ...jwk.Key) []byte {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		if err := set.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeKeyService is a hand-written in-process KeyService.
type fakeKeyService struct {
	issuerv1.UnimplementedKeyServiceServer

	mu       sync.Mutex
	set      *issuerv1.KeySet
	changed  chan struct{} // closed on every notified change
	getErr   error
	getDelay time.Duration
	getCalls atomic.Int32
	watches  atomic.Int32
	// watchSent is the revision a watch stream last sent: a test that
	// publishes without notifying waits for it first, or a stream still
	// starting would deliver the silent change as its first set.
	watchSent atomic.Uint64
}

func newFakeKeyService() *fakeKeyService { return &fakeKeyService{changed: make(chan struct{})} }

// publish installs a new revision and tells watchers (notify) or not, the
// latter standing for a push that has not reached this gateway yet.
func (f *fakeKeyService) publish(jwks []byte, notify bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rev := uint64(1)
	if f.set != nil {
		rev = f.set.Revision + 1
	}
	f.set = &issuerv1.KeySet{Revision: rev, Jwks: jwks}
	if notify {
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

func (f *fakeKeyService) GetKeys(ctx context.Context, _ *issuerv1.GetKeysRequest) (*issuerv1.GetKeysResponse, error) {
	f.getCalls.Add(1)
	f.mu.Lock()
	set, err, delay := f.set, f.getErr, f.getDelay
	f.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if err != nil {
		return nil, err
	}
	if set == nil {
		return nil, status.Error(codes.Unavailable, "no keys yet")
	}
	return &issuerv1.GetKeysResponse{KeySet: set}, nil
}

func (f *fakeKeyService) WatchKeys(_ *issuerv1.WatchKeysRequest, stream grpc.ServerStreamingServer[issuerv1.WatchKeysResponse]) error {
	f.watches.Add(1)
	var sent uint64
	for {
		f.mu.Lock()
		set, changed := f.set, f.changed
		f.mu.Unlock()
		if set != nil && set.Revision != sent {
			if err := stream.Send(&issuerv1.WatchKeysResponse{KeySet: set}); err != nil {
				return err
			}
			sent = set.Revision
			f.watchSent.Store(sent)
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

// testServer runs a KeyService over bufconn and can be restarted, so the
// client sees the issuer go away and come back.
type testServer struct {
	t   testing.TB
	svc *fakeKeyService

	mu  sync.Mutex
	lis *bufconn.Listener
	srv *grpc.Server
}

func startServer(t testing.TB, svc *fakeKeyService) *testServer {
	s := &testServer{t: t, svc: svc}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lis = bufconn.Listen(1 << 20)
	s.srv = grpc.NewServer()
	issuerv1.RegisterKeyServiceServer(s.srv, s.svc)
	srv, lis := s.srv, s.lis
	go func() { _ = srv.Serve(lis) }()
}

func (s *testServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Stop()
		s.srv = nil
	}
}

func (s *testServer) dial() *grpc.ClientConn {
	cc, err := grpc.NewClient("passthrough:///issuer",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			s.mu.Lock()
			lis := s.lis
			s.mu.Unlock()
			return lis.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: grpcbackoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.5, MaxDelay: 50 * time.Millisecond}, MinConnectTimeout: time.Second}))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { cc.Close() })
	return cc
}

func testOptions(clk *clock) Options {
	return Options{
		Now:        clk.Now,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	}
}

// run starts c.Run and stops it at cleanup.
func run(t testing.TB, c *Cache) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestGRPCLoadsThenFollowsTheWatch(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	var removed []string
	var changes atomic.Int32
	var mu sync.Mutex
	opts := testOptions(newClock())
	opts.OnChange = func() { changes.Add(1) }
	opts.OnKeysRemoved = func(kids []string) { mu.Lock(); removed = append(removed, kids...); mu.Unlock() }
	c := NewGRPC(srv.dial(), opts)
	if c.Ready() {
		t.Fatal("ready before any key set")
	}
	if _, err := c.Lookup(context.Background(), "k0"); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Lookup before Run = %v, want ErrNoKeys", err)
	}
	run(t, c)
	eventually(t, "first key set", c.Ready)
	if k, err := c.Lookup(context.Background(), "k0"); err != nil || k.KeyID() != "k0" {
		t.Fatalf("Lookup(k0) = %v, %v", k, err)
	}

	// Rotation pushed by the watch: the new key arrives without a GetKeys.
	gets := svc.getCalls.Load()
	svc.publish(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 1)), true)
	eventually(t, "pushed key k1", func() bool { return c.Has("k1") })
	svc.publish(jwksJSON(t, pubJWK(t, 1)), true)
	eventually(t, "k0 removed", func() bool { return !c.Has("k0") })
	if got := svc.getCalls.Load(); got != gets {
		t.Errorf("%d GetKeys calls while the watch was live, want 0", got-gets)
	}
	if c.Revision() != 3 || len(c.All()) != 1 || c.Age() != 0 {
		t.Errorf("revision %d, %d keys, age %s; want 3, 1, 0 while live", c.Revision(), len(c.All()), c.Age())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(removed) != 1 || removed[0] != "k0" {
		t.Errorf("OnKeysRemoved saw %v, want [k0]", removed)
	}
	if changes.Load() < 3 {
		t.Errorf("OnChange called %d times, want 3", changes.Load())
	}
}

func TestGRPCReconnectsAfterIssuerRestart(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	clk := newClock()
	c := NewGRPC(srv.dial(), testOptions(clk))
	run(t, c)
	eventually(t, "the watch to be live", c.live.Load)

	srv.stop()
	clk.Advance(time.Hour)
	eventually(t, "the watch to notice", func() bool { return c.Age() > 0 || !c.live.Load() })
	// Issuer down: the last set keeps verifying.
	if _, err := c.Lookup(context.Background(), "k0"); err != nil {
		t.Fatalf("Lookup with the issuer down = %v", err)
	}
	svc.publish(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 2)), false)
	srv.start()
	eventually(t, "key from the restarted issuer", func() bool { return c.Has("k2") })
	eventually(t, "live again", func() bool { return c.Age() == 0 })
	if svc.watches.Load() < 2 {
		t.Errorf("%d watch streams, want a reconnect", svc.watches.Load())
	}
	if _, err := c.Lookup(context.Background(), "k0"); err != nil {
		t.Errorf("Lookup(k0) after the restart = %v", err)
	}
}

func TestUnknownKidTriggersOneSharedRateLimitedRefetch(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	clk := newClock()
	opts := testOptions(clk)
	opts.RefetchInterval = time.Minute
	c := NewGRPC(srv.dial(), opts)
	run(t, c)
	eventually(t, "first key set", c.Ready)
	eventually(t, "the watch stream to hold the first set", func() bool { return svc.watchSent.Load() == 1 })

	// k1 is published but the push has not arrived: a refetch finds it.
	svc.publish(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 1)), false)
	svc.mu.Lock()
	svc.getDelay = 50 * time.Millisecond // keep the fetch in flight while all callers arrive
	svc.mu.Unlock()
	before := svc.getCalls.Load()
	lookupMany := func(kid string) (ok, unknown int) {
		var wg sync.WaitGroup
		var nOK, nUnknown atomic.Int32
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := c.Lookup(context.Background(), kid)
				switch {
				case err == nil:
					nOK.Add(1)
				case errors.Is(err, ErrUnknownKey):
					nUnknown.Add(1)
				}
			}()
		}
		wg.Wait()
		return int(nOK.Load()), int(nUnknown.Load())
	}
	if ok, _ := lookupMany("k1"); ok != 100 {
		t.Fatalf("%d of 100 lookups of a freshly published kid succeeded", ok)
	}
	if got := svc.getCalls.Load() - before; got != 1 {
		t.Fatalf("%d GetKeys calls for 100 concurrent lookups, want 1", got)
	}
	// Invented kids within the interval cost the issuer nothing.
	if _, unknown := lookupMany("invented"); unknown != 100 {
		t.Fatalf("%d of 100 invented-kid lookups gave ErrUnknownKey", unknown)
	}
	if got := svc.getCalls.Load() - before; got != 1 {
		t.Fatalf("%d GetKeys calls after invented kids within the interval, want still 1", got)
	}
	clk.Advance(time.Minute)
	if _, err := c.Lookup(context.Background(), "invented"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Lookup(invented) = %v", err)
	}
	if got := svc.getCalls.Load() - before; got != 2 {
		t.Fatalf("%d GetKeys calls after the interval, want 2", got)
	}
}

func TestLookupGivesUpWhenTheCallerDoes(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	c := NewGRPC(srv.dial(), testOptions(newClock()))
	run(t, c)
	eventually(t, "first key set", c.Ready)
	svc.mu.Lock()
	svc.getDelay = 300 * time.Millisecond
	svc.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Lookup(ctx, "k9"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lookup = %v, want the caller's deadline", err)
	}
	time.Sleep(350 * time.Millisecond) // let the shared fetch finish before goleak looks
}

func TestStalenessBound(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	clk := newClock()
	opts := testOptions(clk)
	opts.MaxStaleness = 24 * time.Hour
	c := NewGRPC(srv.dial(), opts)
	run(t, c)
	eventually(t, "the watch to be live", c.live.Load)
	clk.Advance(48 * time.Hour)
	if !c.Ready() {
		t.Fatal("a live watch must never be stale, however quiet")
	}
	srv.stop()
	eventually(t, "the watch to break", func() bool { return !c.live.Load() })
	clk.Advance(23 * time.Hour)
	if _, err := c.Lookup(context.Background(), "k0"); err != nil {
		t.Fatalf("Lookup 23 h into an outage = %v, want the cached key", err)
	}
	clk.Advance(2 * time.Hour)
	if _, err := c.Lookup(context.Background(), "k0"); !errors.Is(err, ErrStale) {
		t.Fatalf("Lookup 25 h into an outage = %v, want ErrStale", err)
	}
	if c.Ready() || c.All() != nil || c.Has("k0") {
		t.Fatal("a stale cache must not be ready or hand out keys")
	}
}

func TestUnusableSetNeverReplacesAGoodOne(t *testing.T) {
	svc := newFakeKeyService()
	svc.publish(jwksJSON(t, pubJWK(t, 0)), true)
	srv := startServer(t, svc)
	c := NewGRPC(srv.dial(), testOptions(newClock()))
	run(t, c)
	eventually(t, "first key set", c.Ready)
	svc.publish([]byte(`{"keys":[]}`), true)
	svc.publish([]byte(`not json`), true)
	svc.publish([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}]}`), true)
	svc.publish(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 3)), true)
	eventually(t, "the next good set", func() bool { return c.Has("k3") })
	if !c.Has("k0") {
		t.Fatal("good key lost to an unusable set")
	}
}

func TestNoKeySetFailsClosed(t *testing.T) {
	svc := newFakeKeyService() // never publishes
	srv := startServer(t, svc)
	c := NewGRPC(srv.dial(), testOptions(newClock()))
	run(t, c)
	eventually(t, "a GetKeys attempt", func() bool { return svc.getCalls.Load() > 0 })
	if _, err := c.Lookup(context.Background(), "k0"); !errors.Is(err, ErrNoKeys) {
		t.Fatalf("Lookup = %v, want ErrNoKeys", err)
	}
	if c.Ready() || c.All() != nil || c.Revision() != 0 || c.Age() != 0 {
		t.Fatal("an empty cache must report not ready and no keys")
	}
}

func TestParseSetKeepsOnlyUsablePublicSignatureKeys(t *testing.T) {
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ec384, _ := jwk.FromRaw(&ecPriv.PublicKey)
	_ = ec384.Set(jwk.KeyIDKey, "p384")
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ed, _ := jwk.FromRaw(edPub)
	_ = ed.Set(jwk.KeyIDKey, "ed")
	edPrivJWK, _ := jwk.FromRaw(edPriv)
	_ = edPrivJWK.Set(jwk.KeyIDKey, "ed-priv")
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallJWK, _ := jwk.FromRaw(&small.PublicKey)
	_ = smallJWK.Set(jwk.KeyIDKey, "rsa1024")
	enc := pubJWK(t, 1)
	_ = enc.Set(jwk.KeyUsageKey, "enc")
	noKID, _ := jwk.FromRaw(&rsaKeys[2].PublicKey)

	s, err := parseSet(jwksJSON(t, pubJWK(t, 0), ec384, ed, edPrivJWK, smallJWK, enc, noKID), 7)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for kid := range s.byKID {
		kids = append(kids, kid)
	}
	if len(s.byKID) != 3 || s.byKID["k0"] == nil || s.byKID["ed"] == nil || s.byKID["ed-priv"] == nil || len(s.all) != 4 {
		t.Fatalf("kept kids %v and %d keys; want k0, ed, ed-priv (+1 without kid)", kids, len(s.all))
	}
	var raw any
	if err := s.byKID["ed-priv"].Raw(&raw); err != nil {
		t.Fatal(err)
	}
	if _, isPub := raw.(ed25519.PublicKey); !isPub {
		t.Fatalf("private key material kept: %T", raw)
	}
	if _, err := parseSet(jwksJSON(t, pubJWK(t, 0), pubJWK(t, 0)), 1); err == nil {
		t.Fatal("duplicate kid accepted")
	}
}
