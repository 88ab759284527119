package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/pkg/token"
)

// VerifyBearer is the HTTP API's entry point: the x-gitlab-* headers are
// optional there, but when sent they are checked exactly as on gRPC.
func TestVerifyBearerMakesTheGitLabHeadersOptional(t *testing.T) {
	loadKeys(t)
	good := mint(t, kRSA, goodClaims())
	bearerOnly := func(tok string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+tok) }
	tests := []struct {
		name     string
		md       metadata.MD
		wantCode codes.Code
		wantMsg  string
		wantUser string
	}{
		// The token binds its user: left out, the claim stands in, so limits
		// key on the proven value.
		{name: "bearer alone", md: bearerOnly(good), wantUser: testUser},
		{name: "every header, matching", md: goodMD(good), wantUser: testUser},
		{name: "realm sent and matching", md: mdWith(bearerOnly(good), token.MDRealm, token.RealmSelfManaged), wantUser: testUser},
		{name: "instance id sent and matching", md: mdWith(bearerOnly(good), token.MDInstanceID, testInstance), wantUser: testUser},
		{name: "global user id sent and matching", md: mdWith(bearerOnly(good), token.MDGlobalUserID, testUser), wantUser: testUser},
		{name: "global user id sent and wrong", md: mdWith(bearerOnly(good), token.MDGlobalUserID, "someone-else"), wantCode: codes.Unauthenticated, wantMsg: MsgGlobalUserMismatch},
		{name: "realm sent and wrong", md: mdWith(bearerOnly(good), token.MDRealm, "saas"), wantCode: codes.Unauthenticated, wantMsg: MsgRealmMismatch},
		{name: "instance id sent and wrong", md: mdWith(bearerOnly(good), token.MDInstanceID, "other"), wantCode: codes.Unauthenticated, wantMsg: MsgInstanceMismatch},
		{name: "authentication type sent and wrong", md: mdWith(bearerOnly(good), token.MDAuthType, "oauth2"), wantCode: codes.Unauthenticated, wantMsg: MsgBadAuthType},
		{name: "no authorization", md: metadata.MD{}, wantCode: codes.Unauthenticated, wantMsg: MsgNoAuthorization},
		{name: "bad signature", md: bearerOnly(good[:len(good)-4] + "AAAA"), wantCode: codes.Unauthenticated, wantMsg: MsgForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := newTestVerifier(t, newFakeKeys(kRSA), nil)
			// Twice: the second call is answered from the verified-token cache.
			for i := 0; i < 2; i++ {
				id, err := v.VerifyBearer(context.Background(), "", tt.md)
				if tt.wantCode != codes.OK {
					if st, _ := status.FromError(err); st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
						t.Fatalf("call %d: err = %v, want %s %q", i, err, tt.wantCode, tt.wantMsg)
					}
					continue
				}
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if id.InstanceID != testInstance || id.Realm != token.RealmSelfManaged || id.GlobalUserID != tt.wantUser {
					t.Errorf("call %d: identity = %+v", i, id)
				}
			}
		})
	}
}

// The gRPC entry point keeps requiring every header.
func TestVerifyStillRequiresTheHeaders(t *testing.T) {
	loadKeys(t)
	v, _ := newTestVerifier(t, newFakeKeys(kRSA), nil)
	md := metadata.Pairs("authorization", "Bearer "+mint(t, kRSA, goodClaims()))
	if _, err := v.Verify(context.Background(), md); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Verify without x-gitlab-* headers: %v, want Unauthenticated", err)
	}
}
