package authn

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/store"
)

// good is the one PAT fakeLookup knows, of user 1.
const good = "alpat_goodgoodgoodgoodgoodgoodgoodgoodgoodgoodgoA"

// fakeLookup knows one PAT, good, of user 1.
type fakeLookup struct{}

func (fakeLookup) GetPATByHash(_ context.Context, h []byte) (store.PAT, error) {
	if string(h) == string(pat.Hash(good)) {
		return store.PAT{ID: "p", Hash: h, UserID: 1, ExpireTime: time.Unix(1<<40, 0)}, nil
	}
	return store.PAT{}, store.ErrNotFound
}

func (fakeLookup) GetUserByID(context.Context, uint64) (store.User, error) {
	return store.User{ID: 1, Username: "u", Role: store.RoleUser}, nil
}

// FuzzAuthorizationHeader: any header value is either the one good token or
// Unauthenticated; never a panic, never another code.
func FuzzAuthorizationHeader(f *testing.F) {
	for _, s := range []string{"Bearer " + good, "bearer " + good, "Bearer  " + good + " ", "Bearer", "Basic x", "", " ", "Bearer alpat_bad", "BEARER\t" + good} {
		f.Add(s)
	}
	authFn := New(NewPATs(fakeLookup{}, time.Now, nil))
	// The seeds reach both outcomes: the fuzzer starts from an accepted header.
	if _, err := authFn(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+good))); err != nil {
		f.Fatalf("the good PAT is refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, header string) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", header))
		out, err := authFn(ctx)
		if err == nil {
			if id, ok := FromContext(out); !ok || id.UserID != 1 {
				t.Fatalf("accepted %q without an identity", header)
			}
			return
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("header %q: code %v", header, status.Code(err))
		}
	})
}
