package modelsvc_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestUpdateMask(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	for _, m := range []*issuerv1.Model{validModel("target"), validModel("other")} {
		if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: m}); err != nil {
			t.Fatal(err)
		}
	}
	// Every case updates its own model, stored as stored(name) says.
	stored := func(name string) *issuerv1.Model {
		return with(validModel(name), func(m *issuerv1.Model) { m.ApiKey, m.FallbackModel = apiKey, "target" })
	}
	// want is the stored model after the update, as GetModel shows it.
	want := func(name string, f func(*issuerv1.Model)) *issuerv1.Model {
		m := with(stored(name), func(m *issuerv1.Model) { m.ApiKey, m.HasApiKey = "", true })
		f(m)
		return m
	}
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	allPaths := "family, provider, endpoint, identifier, api_key, trusted_networks, fallback_model, api_version"
	tests := []struct {
		name     string
		mask     *fieldmaskpb.FieldMask
		model    *issuerv1.Model // name filled in
		clearKey bool
		code     codes.Code
		msg      string
		want     func(*issuerv1.Model) // applied to the stored model
	}{
		{"a named field changes, the others stay", mask("identifier"), &issuerv1.Model{Identifier: "new"}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.Identifier = "new" }},
		{"a named empty field is cleared", mask("fallback_model"), &issuerv1.Model{}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.FallbackModel = "" }},
		{"a field given but not named is ignored", mask("identifier"), &issuerv1.Model{Endpoint: "http://10.9.9.9/v1", Identifier: "v2"}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.Identifier = "v2" }},
		{"no mask: only the fields set change", nil, &issuerv1.Model{FallbackModel: "other"}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.FallbackModel = "other" }},
		{"empty mask is no mask", mask(), &issuerv1.Model{TrustedNetworks: []string{"10.1.0.0/16"}}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.TrustedNetworks = []string{"10.1.0.0/16"} }},
		{"star replaces every field but the API key", mask("*"), validModel(""), false, codes.OK, "",
			func(m *issuerv1.Model) { m.FallbackModel = "" }},
		{"api_key named with a value replaces the key", mask("api_key"), &issuerv1.Model{ApiKey: "sk-new"}, false, codes.OK, "",
			func(*issuerv1.Model) {}},
		{"api_key named empty removes the key", mask("api_key"), &issuerv1.Model{}, false, codes.OK, "",
			func(m *issuerv1.Model) { m.HasApiKey = false }},
		{"clear_api_key with a mask that does not name it", mask("identifier"), &issuerv1.Model{Identifier: "x"}, true, codes.OK, "",
			func(m *issuerv1.Model) { m.Identifier, m.HasApiKey = "x", false }},
		{"api_key given but not named", mask("identifier"), &issuerv1.Model{Identifier: "x", ApiKey: "sk-new"}, false, codes.InvalidArgument,
			"model.api_key: given, but update_mask does not name api_key", nil},
		{"unknown path", mask("identifier", "famly"), &issuerv1.Model{}, false, codes.InvalidArgument,
			`update_mask: unknown field "famly": want one of ` + allPaths, nil},
		{"name cannot be named", mask("name"), &issuerv1.Model{}, false, codes.InvalidArgument,
			`update_mask: "name" cannot be updated: it names the model to update`, nil},
		{"output-only path", mask("create_time"), &issuerv1.Model{}, false, codes.InvalidArgument, `update_mask: "create_time" is output only`, nil},
		{"star with other paths", mask("*", "family"), &issuerv1.Model{}, false, codes.InvalidArgument, `update_mask: "*" must be the only path`, nil},
		{"the merged model is validated", mask("provider"), &issuerv1.Model{Provider: "bedrock"}, false, codes.InvalidArgument,
			`provider: unknown provider "bedrock": want one of openai_compatible, ollama, anthropic, azure_openai, tgi`, nil},
		{"a named field is checked against the stored ones", mask("endpoint"), &issuerv1.Model{Endpoint: "http://192.168.1.5/v1"}, false, codes.InvalidArgument,
			`endpoint: address 192.168.1.5 is outside the trusted networks`, nil},
		{"a named empty required field is refused", mask("family"), &issuerv1.Model{}, false, codes.InvalidArgument,
			`family: unknown model family "": want one of mistral, mixtral, llama3, codegemma, codestral, codellama, deepseekcoder, qwen, claude_3, gpt, general`, nil},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("case-%d", i)
			if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: stored(name)}); err != nil {
				t.Fatal(err)
			}
			m := proto.Clone(tc.model).(*issuerv1.Model)
			m.Name = name
			_, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: m, UpdateMask: tc.mask, ClearApiKey: tc.clearKey})
			wantStatus(t, err, tc.code, tc.msg)
			got, gerr := e.Models().GetModel(admin, &issuerv1.GetModelRequest{Name: name})
			if gerr != nil {
				t.Fatal(gerr)
			}
			w := want(name, func(*issuerv1.Model) {})
			if tc.want != nil {
				w = want(name, tc.want)
			}
			got.Model.CreateTime, got.Model.UpdateTime = nil, nil
			if !proto.Equal(got.GetModel(), w) {
				t.Fatalf("stored after the update:\n got %v\nwant %v", got.GetModel(), w)
			}
		})
	}
	_, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "nope", Identifier: "x"}, UpdateMask: mask("identifier")})
	wantStatus(t, err, codes.NotFound, `model "nope": not found`)
}

// TestUpdateMaskKeyReachesTheGateway: a key set through the mask is the one
// the gateway's watch delivers, and a masked update that leaves it alone
// keeps it.
func TestUpdateMaskKeyReachesTheGateway(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: with(validModel("m"), func(m *issuerv1.Model) { m.ApiKey = apiKey })}); err != nil {
		t.Fatal(err)
	}
	watchKey := func() string {
		t.Helper()
		w, err := e.Models().WatchModels(testenv.Ctx(e.Gateway), &issuerv1.WatchModelsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := w.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return snap.GetModels()[0].GetApiKey()
	}
	if _, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "m", Identifier: "x"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"identifier"}}}); err != nil {
		t.Fatal(err)
	}
	if got := watchKey(); got != apiKey {
		t.Fatalf("key after an identifier update = %q, want it kept", got)
	}
	if _, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "m", ApiKey: "sk-rotated"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"api_key"}}}); err != nil {
		t.Fatal(err)
	}
	if got := watchKey(); got != "sk-rotated" {
		t.Fatalf("key after an api_key update = %q, want sk-rotated", got)
	}
}
