package revocation

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeTokenService pushes revocations to watchers, like the issuer.
type fakeTokenService struct {
	issuerv1.UnimplementedTokenServiceServer
	mu      sync.Mutex
	all     []*issuerv1.Revocation
	changed chan struct{}
	watches atomic.Int32
}

func (f *fakeTokenService) revoke(jti string, exp time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.all = append(f.all, &issuerv1.Revocation{Jti: jti, ExpireTime: timestamppb.New(exp), RevokeTime: timestamppb.New(t0)})
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeTokenService) WatchRevocations(_ *issuerv1.WatchRevocationsRequest, stream grpc.ServerStreamingServer[issuerv1.WatchRevocationsResponse]) error {
	f.watches.Add(1)
	sent := 0
	for {
		f.mu.Lock()
		batch, changed := f.all[sent:], f.changed
		f.mu.Unlock()
		if len(batch) > 0 || sent == 0 {
			if err := stream.Send(&issuerv1.WatchRevocationsResponse{Revocations: batch}); err != nil {
				return err
			}
			sent += len(batch)
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func serve(t *testing.T, svc *fakeTokenService) (cc *grpc.ClientConn, stop func()) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	issuerv1.RegisterTokenServiceServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	cc, err := grpc.NewClient("passthrough:///issuer",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(srv.Stop) }
	t.Cleanup(func() { cc.Close(); stop() })
	return cc, stop
}

func run(t *testing.T, l *List) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not within %s", what, within)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPushedRevocationTakesEffectWithinASecond(t *testing.T) {
	svc := &fakeTokenService{changed: make(chan struct{})}
	svc.revoke("before-start", t0.Add(time.Hour))
	cc, _ := serve(t, svc)
	var mu sync.Mutex
	var evicted []string
	l := NewGRPC(cc, Options{Now: func() time.Time { return t0 }, OnRevoke: func(jti string) {
		mu.Lock()
		evicted = append(evicted, jti)
		mu.Unlock()
	}})
	run(t, l)
	eventually(t, time.Second, "initial sync", l.Synced)
	if !l.Revoked("before-start") {
		t.Fatal("revocation from the initial snapshot missing")
	}
	svc.revoke("live", t0.Add(time.Hour))
	eventually(t, time.Second, "pushed revocation", func() bool { return l.Revoked("live") })
	if l.Revoked("never-revoked") || l.Revoked("") {
		t.Fatal("unrevoked jti reported revoked")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(evicted) != 2 {
		t.Fatalf("OnRevoke saw %v, want both jtis once", evicted)
	}
}

func TestWatchReconnectsAndKeepsWhatItHad(t *testing.T) {
	svc := &fakeTokenService{changed: make(chan struct{})}
	svc.revoke("a", t0.Add(time.Hour))
	cc, stop := serve(t, svc)
	l := NewGRPC(cc, Options{Now: func() time.Time { return t0 }, MinBackoff: 5 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	run(t, l)
	eventually(t, time.Second, "initial sync", l.Synced)
	stop()
	// The issuer is gone: what was revoked stays revoked.
	time.Sleep(30 * time.Millisecond)
	if !l.Revoked("a") {
		t.Fatal("revocation forgotten when the issuer went away")
	}
}

func TestAddAndPrune(t *testing.T) {
	now := t0
	l := New(Options{Now: func() time.Time { return now }, Grace: time.Minute, MaxTTL: 24 * time.Hour})
	tests := []struct {
		name    string
		jti     string
		exp     time.Time
		wantNew bool
	}{
		{"new revocation", "a", t0.Add(time.Hour), true},
		{"repeat is not new", "a", t0.Add(time.Hour), false},
		{"zero expiry kept for MaxTTL", "b", time.Time{}, true},
		{"absurd expiry capped to MaxTTL", "c", t0.Add(100 * 24 * time.Hour), true},
		{"long-expired token not stored", "d", t0.Add(-time.Hour), false},
		{"empty jti ignored", "", t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := l.Add(tt.jti, tt.exp); got != tt.wantNew {
			t.Errorf("%s: Add = %v, want %v", tt.name, got, tt.wantNew)
		}
	}
	if l.Len() != 3 || l.Revoked("d") {
		t.Fatalf("%d entries, d revoked %v", l.Len(), l.Revoked("d"))
	}
	// Within the grace after expiry the entry must still be there: the
	// verifier's leeway may still accept the token.
	now = t0.Add(time.Hour + 30*time.Second)
	l.Prune()
	if !l.Revoked("a") {
		t.Fatal("entry pruned inside the grace period")
	}
	now = t0.Add(time.Hour + 2*time.Minute)
	l.Prune()
	if l.Revoked("a") || !l.Revoked("b") || !l.Revoked("c") {
		t.Fatal("prune dropped the wrong entries")
	}
	now = t0.Add(25 * time.Hour)
	l.Prune()
	if l.Len() != 0 {
		t.Fatalf("%d entries after MaxTTL", l.Len())
	}
}

func TestAgeIsZeroWhileTheWatchIsUpAndGrowsAfterItEnds(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	svc := &fakeTokenService{changed: make(chan struct{})}
	cc, stop := serve(t, svc)
	l := NewGRPC(cc, Options{Now: clock, MinBackoff: time.Hour, MaxBackoff: time.Hour})
	advance(3 * time.Second)
	if got := l.Age(); got != 3*time.Second {
		t.Fatalf("before the first sync Age = %v, want the 3 s since New", got)
	}
	run(t, l)
	eventually(t, 5*time.Second, "initial sync", l.Synced)
	eventually(t, 5*time.Second, "age zero while the watch is up", func() bool { return l.Age() == 0 })
	stop()
	eventually(t, 5*time.Second, "the stream's end noticed", func() bool { advance(time.Millisecond); return l.Age() > 0 })
	before := l.Age()
	advance(7 * time.Second)
	if got := l.Age(); got != before+7*time.Second {
		t.Fatalf("Age = %v 7 s after %v, want it to grow with the clock", got, before)
	}
}
