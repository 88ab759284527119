package keysvc_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGetKeysIsPublic(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	resp, err := e.KeysClient().GetKeys(context.Background(), &issuerv1.GetKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ks := resp.GetKeySet()
	if ks.GetRevision() == 0 || len(ks.GetKeys()) != 2 || string(ks.GetJwks()) != string(e.Keys.KeySet().JWKS) {
		t.Fatalf("GetKeys = %v", ks)
	}
	if ks.GetKeys()[0].GetState() != issuerv1.KeyState_KEY_STATE_ACTIVE || ks.GetKeys()[1].GetState() != issuerv1.KeyState_KEY_STATE_PREPARED {
		t.Fatalf("states: %v", ks.GetKeys())
	}
	if ks.GetKeys()[1].GetRetireTime() != nil || ks.GetKeys()[1].GetActivateTime() == nil {
		t.Fatal("unset times must stay unset and the prepared key's activation must be announced")
	}
}

func TestWatchKeysPushesEveryChange(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Watchers that never read must not hold up rotation.
	for range 20 {
		if _, err := e.KeysClient().WatchKeys(ctx, &issuerv1.WatchKeysRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	w, err := e.KeysClient().WatchKeys(ctx, &issuerv1.WatchKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := e.KeysClient().RotateKeys(testenv.Ctx(e.Admin), &issuerv1.RotateKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetKeySet().GetRevision() != rotated.GetKeySet().GetRevision() || got.GetKeySet().GetRevision() <= first.GetKeySet().GetRevision() {
		t.Fatalf("watch revision %d, rotate revision %d, first %d", got.GetKeySet().GetRevision(), rotated.GetKeySet().GetRevision(), first.GetKeySet().GetRevision())
	}
	if len(got.GetKeySet().GetKeys()) != 3 || got.GetKeySet().GetKeys()[2].GetState() != issuerv1.KeyState_KEY_STATE_RETIRED {
		t.Fatalf("after rotation: %v", got.GetKeySet().GetKeys())
	}
	// Scheduled changes are pushed too: the retired key is pruned.
	e.Clock.Add(2 * time.Hour)
	if err := e.Keys.Tick(context.Background(), e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	pruned, err := w.Recv()
	if err != nil || len(pruned.GetKeySet().GetKeys()) != 2 {
		t.Fatalf("after prune: %v %v", pruned, err)
	}

	// A client holding the current revision gets nothing until the next change.
	w2, err := e.KeysClient().WatchKeys(ctx, &issuerv1.WatchKeysRequest{KnownRevision: pruned.GetKeySet().GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	next, err := w2.Recv()
	if err != nil || next.GetKeySet().GetRevision() != pruned.GetKeySet().GetRevision()+1 {
		t.Fatalf("known-revision watcher: %v %v", next, err)
	}
}

func TestRotateKeysNeedsAdmin(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	for pat, want := range map[string]codes.Code{"": codes.Unauthenticated, e.User: codes.PermissionDenied, e.Gateway: codes.PermissionDenied} {
		_, err := e.KeysClient().RotateKeys(testenv.Ctx(pat), &issuerv1.RotateKeysRequest{})
		if status.Code(err) != want {
			t.Errorf("RotateKeys: %v, want %v", err, want)
		}
	}
}
