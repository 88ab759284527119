package authn_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/pat"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPATAuthentication(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx := context.Background()
	// An expired and a revoked token for "user".
	u := e.Users["user"]
	expiredID, expired, err := pat.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_ = expiredID
	if err := e.Store.CreatePAT(ctx, storePAT(expiredID, expired, u.ID, testenv.Start.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	revokedID, revoked, _ := pat.Generate()
	if err := e.Store.CreatePAT(ctx, storePAT(revokedID, revoked, u.ID, testenv.Start.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.UsersClient().RevokePersonalAccessToken(testenv.Ctx(e.Admin), &issuerv1.RevokePersonalAccessTokenRequest{Id: revokedID}); err != nil {
		t.Fatal(err)
	}
	withMD := func(kv ...string) context.Context { return metadata.AppendToOutgoingContext(ctx, kv...) }

	tests := []struct {
		name     string
		ctx      context.Context
		wantCode codes.Code
		wantMsg  string
	}{
		{"valid user token is accepted", testenv.Ctx(e.User), codes.OK, ""},
		{"scheme is case-insensitive", withMD("authorization", "bearer "+e.User), codes.OK, ""},
		{"missing authorization", ctx, codes.Unauthenticated, authn.MsgMissing},
		{"not a bearer scheme", withMD("authorization", "Basic "+e.User), codes.Unauthenticated, authn.MsgMissing},
		{"empty bearer", withMD("authorization", "Bearer "), codes.Unauthenticated, authn.MsgMissing},
		{"white space after the token", withMD("authorization", "Bearer "+e.User+" "), codes.Unauthenticated, authn.MsgMissing},
		{"two spaces after the scheme", withMD("authorization", "Bearer  "+e.User), codes.Unauthenticated, authn.MsgMissing},
		{"two authorization values", withMD("authorization", "Bearer "+e.User, "authorization", "Bearer "+e.Admin), codes.Unauthenticated, authn.MsgMissing},
		{"wrong token", testenv.Ctx(pat.Prefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), codes.Unauthenticated, authn.MsgInvalid},
		{"malformed token", testenv.Ctx(pat.Prefix + "short"), codes.Unauthenticated, authn.MsgInvalid},
		{"expired token", testenv.Ctx(expired), codes.Unauthenticated, authn.MsgInvalid},
		{"revoked token", testenv.Ctx(revoked), codes.Unauthenticated, authn.MsgInvalid},
		{"wrong role", testenv.Ctx(e.Gateway), codes.PermissionDenied, "requires ROLE_USER or ROLE_ADMIN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Tokens().MintToken(tc.ctx, &issuerv1.MintTokenRequest{})
			st, _ := status.FromError(err)
			if st.Code() != tc.wantCode || !strings.Contains(st.Message(), tc.wantMsg) {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.wantCode, tc.wantMsg)
			}
		})
	}
	// Which secret was presented never reaches the log.
	for _, secret := range []string{e.User, expired, revoked, e.Admin, e.Gateway} {
		if strings.Contains(e.Logs.String(), secret) {
			t.Fatal("a personal access token appears in the log")
		}
	}
}

func TestRoleMatrix(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	type call func(ctx context.Context) error
	users, models, keys := e.UsersClient(), e.Models(), e.KeysClient()
	calls := map[string]call{
		"ListUsers": func(ctx context.Context) error {
			_, err := users.ListUsers(ctx, &issuerv1.ListUsersRequest{})
			return err
		},
		"RotateKeys": func(ctx context.Context) error {
			_, err := keys.RotateKeys(ctx, &issuerv1.RotateKeysRequest{})
			return err
		},
		"ListModels": func(ctx context.Context) error {
			_, err := models.ListModels(ctx, &issuerv1.ListModelsRequest{})
			return err
		},
		"ListFeatureSettings": func(ctx context.Context) error {
			_, err := models.ListFeatureSettings(ctx, &issuerv1.ListFeatureSettingsRequest{})
			return err
		},
		"GetKeys": func(ctx context.Context) error { _, err := keys.GetKeys(ctx, &issuerv1.GetKeysRequest{}); return err },
	}
	tests := []struct {
		method string
		pat    string
		want   codes.Code
	}{
		{"ListUsers", e.Admin, codes.OK},
		{"ListUsers", e.User, codes.PermissionDenied},
		{"ListUsers", e.Gateway, codes.PermissionDenied},
		{"ListUsers", "", codes.Unauthenticated},
		{"RotateKeys", e.Admin, codes.OK},
		{"RotateKeys", e.User, codes.PermissionDenied},
		{"RotateKeys", e.Gateway, codes.PermissionDenied},
		{"ListModels", e.Gateway, codes.OK},
		{"ListModels", e.Admin, codes.OK},
		{"ListModels", e.User, codes.PermissionDenied},
		{"ListFeatureSettings", e.Gateway, codes.OK},
		{"ListFeatureSettings", e.User, codes.PermissionDenied},
		{"GetKeys", "", codes.OK},
	}
	for _, tc := range tests {
		name := tc.method + " as " + map[string]string{e.Admin: "admin", e.User: "user", e.Gateway: "gateway", "": "anonymous"}[tc.pat]
		t.Run(name, func(t *testing.T) {
			if got := status.Code(calls[tc.method](testenv.Ctx(tc.pat))); got != tc.want {
				t.Fatalf("code %v, want %v", got, tc.want)
			}
		})
	}
}
