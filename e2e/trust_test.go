package e2e

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// TestTokenBindsItsUser: the issuer binds the global user id to the token,
// so a caller can neither spray header values to escape its per-user limit
// nor spend another user's.
func TestTokenBindsItsUser(t *testing.T) {
	c := newCluster(t, "--user-requests-per-minute", "3")
	md := cluster.Metadata(c.mint(nil, 0))
	user := md["x-gitlab-global-user-id"]
	if user == "" {
		t.Fatal("mint response carries no x-gitlab-global-user-id")
	}
	with := func(v string) map[string]string {
		out := map[string]string{}
		for k, vv := range md {
			out[k] = vv
		}
		if v == "" {
			delete(out, "x-gitlab-global-user-id")
		} else {
			out["x-gitlab-global-user-id"] = v
		}
		return out
	}
	// Five other values and a missing header: refused, whatever the value.
	for i, v := range []string{"a", "b", "c", "d", "someone-else", ""} {
		_, err := c.stream(withMetadata(with(v)), "duo_chat")
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "Header mismatch 'X-Gitlab-Global-User-Id'" {
			t.Fatalf("call %d with global user id %q: %v, want Unauthenticated Header mismatch", i, v, err)
		}
	}
	// The proven user gets exactly its own limit of 3.
	for i := range 4 {
		_, err := c.stream(withMetadata(with(user)), "duo_chat")
		want := codes.OK
		if i == 3 {
			want = codes.ResourceExhausted
		}
		if status.Code(err) != want {
			t.Fatalf("call %d of the proven user: %v, want %v", i+1, err, want)
		}
	}
	// A second token of the same user shares that limit.
	md2 := cluster.Metadata(c.mint(nil, 0))
	if md2["x-gitlab-global-user-id"] != user {
		t.Fatalf("two tokens of one user carry %q and %q", user, md2["x-gitlab-global-user-id"])
	}
	if _, err := c.stream(withMetadata(md2), "duo_chat"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("another token of the same user: %v, want ResourceExhausted (one limit per user)", err)
	}
}
