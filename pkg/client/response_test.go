package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestTokenFromResponseKeepsAnExpiredTokenAndOnlyForwardedMetadata(t *testing.T) {
	past := time.Now().Add(-time.Second).Truncate(time.Second)
	tok, err := TokenFromResponse(&issuerv1.MintTokenResponse{Token: "jwt", Jti: "j", Scopes: []string{"duo_chat"},
		ExpireTime: timestamppb.New(past),
		Metadata:   map[string]string{"authorization": "Bearer jwt", "X-Gitlab-Instance-Id": "i", "other": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "jwt" || tok.ID != "j" || !tok.Expiry.Equal(past) || len(tok.Scopes) != 1 ||
		len(tok.Metadata) != 1 || tok.Metadata["x-gitlab-instance-id"] != "i" {
		t.Fatalf("token = %+v, metadata %v", tok, tok.Metadata)
	}
}

func TestTokenFromResponseRefusesAnIncompleteResponse(t *testing.T) {
	for name, resp := range map[string]*issuerv1.MintTokenResponse{
		"no token":       {ExpireTime: timestamppb.Now()},
		"no expire_time": {Token: "jwt"},
	} {
		var e *Error
		if _, err := TokenFromResponse(resp); !errors.As(err, &e) || e.Code != codes.Internal {
			t.Errorf("%s: %v, want an Internal *Error", name, err)
		}
	}
}
