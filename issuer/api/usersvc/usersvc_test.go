package usersvc_test

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestUsersAndPATs(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	c := e.UsersClient()
	tests := []struct {
		name string
		user *issuerv1.User
		code codes.Code
		msg  string
	}{
		{"valid user", &issuerv1.User{Username: "carol", Role: issuerv1.Role_ROLE_USER, EntitledFeatures: []string{"code_completions"}}, codes.OK, ""},
		{"duplicate", &issuerv1.User{Username: "carol", Role: issuerv1.Role_ROLE_USER}, codes.AlreadyExists, `user "carol": already exists`},
		{"bad username", &issuerv1.User{Username: "Carol!", Role: issuerv1.Role_ROLE_USER}, codes.InvalidArgument, `username: "Carol!" is not 1-63 characters of [a-z0-9_.-]`},
		{"no role", &issuerv1.User{Username: "dave"}, codes.InvalidArgument, "role: must be ROLE_USER, ROLE_ADMIN or ROLE_GATEWAY"},
		{"unknown feature", &issuerv1.User{Username: "dave", Role: issuerv1.Role_ROLE_USER, EntitledFeatures: []string{"x"}}, codes.InvalidArgument, `entitled_features[0]: unknown feature "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateUser(admin, &issuerv1.CreateUserRequest{User: tc.user})
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}

	_, err := c.CreatePersonalAccessToken(admin, &issuerv1.CreatePersonalAccessTokenRequest{Username: "carol", ExpireTime: timestamppb.New(testenv.Start.Add(-time.Minute))})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("past expiry: %v", err)
	}
	_, err = c.CreatePersonalAccessToken(admin, &issuerv1.CreatePersonalAccessTokenRequest{Username: "nobody"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown user: %v", err)
	}
	pat, err := c.CreatePersonalAccessToken(admin, &issuerv1.CreatePersonalAccessTokenRequest{Username: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if !pat.GetToken().GetExpireTime().AsTime().Equal(testenv.Start.Add(30 * 24 * time.Hour)) {
		t.Fatalf("default expiry %v", pat.GetToken().GetExpireTime().AsTime())
	}
	// The new PAT works, then stops working once revoked.
	mint := func() error {
		_, err := e.Tokens().MintToken(testenv.Ctx(pat.GetSecret()), &issuerv1.MintTokenRequest{})
		return err
	}
	if err := mint(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokePersonalAccessToken(admin, &issuerv1.RevokePersonalAccessTokenRequest{Id: pat.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	if status.Code(mint()) != codes.Unauthenticated {
		t.Fatal("revoked PAT still authenticates")
	}
	list, err := c.ListUsers(admin, &issuerv1.ListUsersRequest{})
	if err != nil || len(list.GetUsers()) != 6 || list.GetUsers()[0].GetUsername() != "admin" {
		t.Fatalf("ListUsers = %v %v", list, err)
	}
	if strings.Contains(e.Logs.String(), pat.GetSecret()) {
		t.Fatal("PAT secret in the log")
	}
}

func TestUserLimit(t *testing.T) {
	e := testenv.New(t, testenv.Options{MaxUsers: 6}) // testenv seeds five users
	admin := testenv.Ctx(e.Admin)
	if _, err := e.UsersClient().CreateUser(admin, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: "sixth", Role: issuerv1.Role_ROLE_USER}}); err != nil {
		t.Fatalf("user within the limit: %v", err)
	}
	_, err := e.UsersClient().CreateUser(admin, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: "seventh", Role: issuerv1.Role_ROLE_USER}})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "user limit reached (6 users, limit 6)" {
		t.Fatalf("user past the limit = %v, want ResourceExhausted", err)
	}
}
