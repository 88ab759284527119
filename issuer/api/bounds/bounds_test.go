package bounds_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// big is a value far over every bound: 1 MiB.
var big = strings.Repeat("x", 1<<20)

func many(n int, s string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// TestOversizedFieldsAreRefusedOnEveryRPC sends an oversized value in each
// bounded field of every issuer RPC: each is refused with InvalidArgument
// naming the field, the message stays short, and no log line grows with
// the input.
func TestOversizedFieldsAreRefusedOnEveryRPC(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	tokens, models, users := e.Tokens(), e.Models(), e.UsersClient()
	admin, user := testenv.Ctx(e.Admin), testenv.Ctx(e.User)
	model := func(mut func(m *issuerv1.Model)) *issuerv1.Model {
		m := &issuerv1.Model{Name: "m", Family: "general", Provider: "openai_compatible", Endpoint: "http://127.0.0.1:1/v1",
			Identifier: "id", TrustedNetworks: []string{"127.0.0.1/32"}}
		mut(m)
		return m
	}
	tests := []struct {
		name  string
		call  func(context.Context, ...grpc.CallOption) error
		field string
	}{
		{"MintToken with 200,000 feature names", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := tokens.MintToken(user, &issuerv1.MintTokenRequest{Features: many(200_000, "duo_chat")}, o...)
			return err
		}, "features:"},
		{"MintToken with a 1 MiB feature name", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := tokens.MintToken(user, &issuerv1.MintTokenRequest{Features: []string{"duo_chat", big}}, o...)
			return err
		}, "features[1]:"},
		{"RevokeToken with a 1 MiB jti", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := tokens.RevokeToken(user, &issuerv1.RevokeTokenRequest{Jti: big}, o...)
			return err
		}, "jti:"},
		{"CreateModel with a 1 MiB name", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.Name = big })}, o...)
			return err
		}, "model.name:"},
		{"CreateModel with a 1 MiB family", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.Family = big })}, o...)
			return err
		}, "model.family:"},
		{"CreateModel with a 1 MiB provider", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.Provider = big })}, o...)
			return err
		}, "model.provider:"},
		{"CreateModel with a 1 MiB endpoint", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.Endpoint = "http://" + big })}, o...)
			return err
		}, "model.endpoint:"},
		{"CreateModel with a 1 MiB identifier", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.Identifier = big })}, o...)
			return err
		}, "model.identifier:"},
		{"CreateModel with a 1 MiB API key", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.ApiKey = big })}, o...)
			return err
		}, "model.api_key:"},
		{"CreateModel with 100,000 trusted networks", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.TrustedNetworks = many(100_000, "10.0.0.0/8") })}, o...)
			return err
		}, "model.trusted_networks:"},
		{"CreateModel with a 1 MiB trusted network", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.TrustedNetworks = []string{big} })}, o...)
			return err
		}, "model.trusted_networks[0]:"},
		{"CreateModel with a 1 MiB fallback", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.FallbackModel = big })}, o...)
			return err
		}, "model.fallback_model:"},
		{"CreateModel with a 1 MiB api_version", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.CreateModel(admin, &issuerv1.CreateModelRequest{Model: model(func(m *issuerv1.Model) { m.ApiVersion = big })}, o...)
			return err
		}, "model.api_version:"},
		{"UpdateModel with a 1 MiB name", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: model(func(m *issuerv1.Model) { m.Name = big })}, o...)
			return err
		}, "model.name:"},
		{"DeleteModel with a 1 MiB name", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.DeleteModel(admin, &issuerv1.DeleteModelRequest{Name: big}, o...)
			return err
		}, "name:"},
		{"GetModel with a 1 MiB name", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.GetModel(admin, &issuerv1.GetModelRequest{Name: big}, o...)
			return err
		}, "name:"},
		{"SetFeatureSetting with a 1 MiB feature", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.SetFeatureSetting(admin, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: big, Model: "m"}}, o...)
			return err
		}, "setting.feature:"},
		{"SetFeatureSetting with a 1 MiB model", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := models.SetFeatureSetting(admin, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "duo_chat", Model: big}}, o...)
			return err
		}, "setting.model:"},
		{"CreateUser with a 1 MiB username", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := users.CreateUser(admin, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: big, Role: issuerv1.Role_ROLE_USER}}, o...)
			return err
		}, "user.username:"},
		{"CreateUser with 200,000 entitled features", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := users.CreateUser(admin, &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: "u", Role: issuerv1.Role_ROLE_USER, EntitledFeatures: many(200_000, "duo_chat")}}, o...)
			return err
		}, "user.entitled_features:"},
		{"CreatePersonalAccessToken with a 1 MiB username", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := users.CreatePersonalAccessToken(admin, &issuerv1.CreatePersonalAccessTokenRequest{Username: big}, o...)
			return err
		}, "username:"},
		{"RevokePersonalAccessToken with a 1 MiB id", func(_ context.Context, o ...grpc.CallOption) error {
			_, err := users.RevokePersonalAccessToken(admin, &issuerv1.RevokePersonalAccessTokenRequest{Id: big}, o...)
			return err
		}, "id:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(context.Background(), grpc.MaxCallSendMsgSize(8<<20))
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tt.field) {
				t.Fatalf("status = %v %.200q, want InvalidArgument naming %s", st.Code(), st.Message(), tt.field)
			}
			if len(st.Message()) > 256 {
				t.Fatalf("message of %d bytes", len(st.Message()))
			}
		})
	}
	for i, line := range strings.Split(e.Logs.String(), "\n") {
		if len(line) > 2048 {
			t.Fatalf("log line %d is %d bytes: %.200s…", i, len(line), line)
		}
	}
}

// TestValuesUnderTheBoundsAreEchoedShortAndQuoted: a value within its
// bound but invalid is echoed cut to a prefix, quoted, with its length.
func TestValuesUnderTheBoundsAreEchoedShortAndQuoted(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	long := strings.Repeat("y", 64)
	_, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{Features: []string{long}})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `"`+long+`"`) {
		t.Fatalf("MintToken with an unknown 64-byte feature: %v %q", st.Code(), st.Message())
	}
	_, err = e.Tokens().RevokeToken(testenv.Ctx(e.User), &issuerv1.RevokeTokenRequest{Jti: strings.Repeat("j", 64)})
	if st := status.Convert(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), `"jjjj`) {
		t.Fatalf("RevokeToken of an unknown jti: %v %q", st.Code(), st.Message())
	}
}
