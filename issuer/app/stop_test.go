package app

import (
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// TestStopEndsWatchStreamsPromptly: the gateways' watch streams never end on
// their own, so a stop that waited for them would always take the whole
// --shutdown-grace. They must end at once (Unavailable: reconnect) and the
// issuer stop well under a second.
func TestStopEndsWatchStreamsPromptly(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvKEK, "")
	cfg, err := ParseConfig([]string{"--dev", "--data-dir", dir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--shutdown-grace", "10s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, cfg, io.Discard)
	gw := readSecret(t, dir, "gateway")
	cc := dial(t, r.addrs.GRPC)
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+gw))
	defer cancel()
	ks, err := issuerv1.NewKeyServiceClient(cc).WatchKeys(ctx, &issuerv1.WatchKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := issuerv1.NewTokenServiceClient(cc).WatchRevocations(ctx, &issuerv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := issuerv1.NewModelServiceClient(cc).WatchModels(ctx, &issuerv1.WatchModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Each stream's end, after its first message (the stream is open).
	ends := map[string]func() error{
		"WatchKeys":        func() error { return drain(ks.Recv) },
		"WatchRevocations": func() error { return drain(rs.Recv) },
		"WatchModels":      func() error { return drain(ms.Recv) },
	}
	for name, first := range map[string]func() error{
		"WatchKeys":        func() error { _, err := ks.Recv(); return err },
		"WatchRevocations": func() error { _, err := rs.Recv(); return err },
		"WatchModels":      func() error { _, err := ms.Recv(); return err },
	} {
		if err := first(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	begin := time.Now()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	took := time.Since(begin)
	t.Logf("issuer stop with 3 open watch streams took %v", took)
	if took > time.Second {
		t.Fatalf("stop took %v with open watch streams, want well under a second", took)
	}
	for name, end := range ends {
		if err := end(); status.Code(err) != codes.Unavailable {
			t.Errorf("%s ended with %v, want Unavailable (reconnect)", name, err)
		}
	}
}

// drain reads until the stream ends and returns why it ended.
func drain[T any](recv func() (T, error)) error {
	for {
		if _, err := recv(); err != nil {
			return err
		}
	}
}
