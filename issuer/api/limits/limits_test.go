package limits

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/store"
)

func TestRatePerKey(t *testing.T) {
	r := NewRate(3)
	for i := 0; i < 3; i++ {
		if !r.Allow("alice") {
			t.Fatalf("event %d refused within the burst", i+1)
		}
	}
	if r.Allow("alice") {
		t.Fatal("fourth event in a burst of 3 allowed")
	}
	if !r.Allow("bob") {
		t.Fatal("another key was throttled by alice's use")
	}
	if !NewRate(0).Allow("x") || !(*Rate)(nil).Allow("x") {
		t.Fatal("an unlimited rate refused")
	}
}

// fakeStream is a grpc.ServerStream with a context.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

func TestWatchStreamsPerCaller(t *testing.T) {
	in := NewStreams(2).Interceptor()
	alice := authn.WithIdentity(context.Background(), authn.Identity{Username: "alice", Role: store.RoleGateway})
	anon := peer.NewContext(metadata.NewIncomingContext(context.Background(), nil), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5}})
	watch := &grpc.StreamServerInfo{FullMethod: "/airlock.issuer.v1.KeyService/WatchKeys"}

	release := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = in(nil, fakeStream{ctx: alice}, watch, func(any, grpc.ServerStream) error { started <- struct{}{}; <-release; return nil })
		}()
	}
	<-started
	<-started
	err := in(nil, fakeStream{ctx: alice}, watch, func(any, grpc.ServerStream) error { return nil })
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "too many open watch streams for this caller (limit 2)" {
		t.Fatalf("third watch = %v, want ResourceExhausted", err)
	}
	if err := in(nil, fakeStream{ctx: anon}, watch, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatalf("another caller refused: %v", err)
	}
	other := &grpc.StreamServerInfo{FullMethod: "/x.v1.Svc/Stream"}
	if err := in(nil, fakeStream{ctx: alice}, other, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatalf("a non-watch stream was limited: %v", err)
	}
	close(release)
	wg.Wait()
	if err := in(nil, fakeStream{ctx: alice}, watch, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatalf("after the watches ended: %v", err)
	}
}
