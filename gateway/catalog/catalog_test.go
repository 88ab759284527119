package catalog

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func model(name, fallback string) *issuerv1.Model {
	return &issuerv1.Model{Name: name, Provider: "openai_compatible", Endpoint: "http://127.0.0.1/v1", ApiKey: "k-" + name, FallbackModel: fallback, TrustedNetworks: []string{"127.0.0.1/32"}}
}

func TestRoute(t *testing.T) {
	c := New(nil, Options{})
	if _, err := c.Route(feature.DuoChat); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before any config: err = %v, want ErrNotReady", err)
	}
	c.Apply(&issuerv1.WatchModelsResponse{
		Revision: 7,
		Models:   []*issuerv1.Model{model("a", "b"), model("b", "a"), model("c", "missing"), model("d", "")},
		Settings: []*issuerv1.FeatureSetting{
			{Feature: "duo_chat", Model: "a"},
			{Feature: "code_completions", Disabled: true},
			{Feature: "code_generations", Model: "c"},
		},
	})
	tests := []struct {
		name    string
		f       feature.Feature
		want    []string
		wantErr error
	}{
		{"fallback cycle stops at the first repeat", feature.DuoChat, []string{"a", "b"}, nil},
		{"disabled feature", feature.CodeCompletions, nil, ErrDisabled},
		{"dangling fallback is skipped", feature.CodeGenerations, []string{"c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Route(tt.f)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.Model.Name)
				if g.Model.APIKey != "k-"+g.Model.Name || len(g.Trusted) != 1 {
					t.Errorf("target %s lost its key or networks: %+v", g.Model.Name, g)
				}
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Fatalf("route = %v, want %v", names, tt.want)
			}
		})
	}
	c.Apply(&issuerv1.WatchModelsResponse{Revision: 8})
	if _, err := c.Route(feature.DuoChat); !errors.Is(err, ErrNoModel) {
		t.Fatalf("after unbinding: err = %v, want ErrNoModel", err)
	}
	if c.Revision() != 8 {
		t.Fatalf("revision = %d", c.Revision())
	}
}

// fakeModels serves WatchModels from a script: each call sends the next
// snapshot, then fails, so the catalog must reconnect to see the next one.
type fakeModels struct {
	issuerv1.UnimplementedModelServiceServer
	mu    sync.Mutex
	calls int
	snaps []*issuerv1.WatchModelsResponse
	known []uint64
}

func (f *fakeModels) WatchModels(req *issuerv1.WatchModelsRequest, st issuerv1.ModelService_WatchModelsServer) error {
	f.mu.Lock()
	i := min(f.calls, len(f.snaps)-1)
	f.calls++
	f.known = append(f.known, req.GetKnownRevision())
	f.mu.Unlock()
	if err := st.Send(f.snaps[i]); err != nil {
		return err
	}
	if i == len(f.snaps)-1 {
		<-st.Context().Done() // the last snapshot stays current
		return nil
	}
	return status.Error(codes.Unavailable, "issuer restarting")
}

func TestRunFollowsTheWatchAcrossReconnects(t *testing.T) {
	fake := &fakeModels{snaps: []*issuerv1.WatchModelsResponse{
		{Revision: 1, Models: []*issuerv1.Model{model("a", "")}, Settings: []*issuerv1.FeatureSetting{{Feature: "duo_chat", Model: "a"}}},
		{Revision: 2, Models: []*issuerv1.Model{model("b", "")}, Settings: []*issuerv1.FeatureSetting{{Feature: "duo_chat", Model: "b"}}},
	}}
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	issuerv1.RegisterModelServiceServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()

	c := New(issuerv1.NewModelServiceClient(cc), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for c.Revision() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := c.Route(feature.DuoChat); err != nil || got[0].Model.Name != "b" {
		t.Fatalf("after reconnect: route %v, %v; want model b", got, err)
	}
	cancel()
	<-done
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.known) < 2 || fake.known[1] != 1 {
		t.Fatalf("known revisions sent = %v, want the reconnect to resume from 1", fake.known)
	}
}

// refusing answers every watch with PermissionDenied before any message.
type refusing struct {
	issuerv1.UnimplementedModelServiceServer
}

func (refusing) WatchModels(*issuerv1.WatchModelsRequest, issuerv1.ModelService_WatchModelsServer) error {
	return status.Error(codes.PermissionDenied, "not a gateway")
}

// TestRunBacksOffOnTheInjectedClock: the catalog reconnects on the shared
// follow loop, so a refusing issuer sees waits that grow from MinBackoff,
// taken on the injected clock (no real sleeping).
func TestRunBacksOffOnTheInjectedClock(t *testing.T) {
	lis := bufconn.Listen(1 << 16)
	srv := grpc.NewServer()
	issuerv1.RegisterModelServiceServer(srv, refusing{})
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient("passthrough:///buf", grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	c := New(issuerv1.NewModelServiceClient(cc), Options{MinBackoff: time.Second, MaxBackoff: time.Hour,
		Sleep: func(ctx context.Context, d time.Duration) bool {
			waits = append(waits, d)
			if len(waits) == 4 {
				cancel()
			}
			return ctx.Err() == nil
		}})
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not use the injected clock")
	}
	for i, w := range waits {
		if ceil := time.Second << i; w < time.Second/2 || w > ceil {
			t.Errorf("wait %d = %v, want within [0.5s, %v]", i, w, ceil)
		}
	}
	if len(waits) != 4 || c.Ready() {
		t.Fatalf("waits %v, ready %v; want 4 waits and no configuration", waits, c.Ready())
	}
}
