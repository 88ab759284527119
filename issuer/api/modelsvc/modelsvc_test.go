package modelsvc_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const apiKey = "sk-live-7f3a9c2e1b8d4f60a5c7e9b1d3f5a7c9"

func validModel(name string) *issuerv1.Model {
	return &issuerv1.Model{
		Name: name, Family: "mistral", Provider: "openai_compatible", Endpoint: "http://10.1.2.3:8000/v1",
		Identifier: "mistralai/Mistral-7B-Instruct-v0.3", TrustedNetworks: []string{"10.0.0.0/8"},
	}
}

func with(m *issuerv1.Model, f func(*issuerv1.Model)) *issuerv1.Model {
	c := proto.Clone(m).(*issuerv1.Model)
	f(c)
	return c
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || (msg != "" && st.Message() != msg) {
		t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), code, msg)
	}
}

func TestCreateModelValidation(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx := testenv.Ctx(e.Admin)
	if _, err := e.Models().CreateModel(ctx, &issuerv1.CreateModelRequest{Model: validModel("base")}); err != nil {
		t.Fatal(err)
	}
	base := validModel("m")
	tests := []struct {
		name  string
		model *issuerv1.Model
		code  codes.Code
		msg   string
	}{
		{"valid model with a host name", with(base, func(m *issuerv1.Model) { m.Endpoint = "https://vllm.models.svc:8000/v1" }), codes.OK, ""},
		{"bad name", with(base, func(m *issuerv1.Model) { m.Name = "Bad Name" }), codes.InvalidArgument,
			`name: "Bad Name" is not 1-63 characters of [a-z0-9_.-] starting with a letter or digit`},
		{"malformed URL", with(base, func(m *issuerv1.Model) { m.Endpoint = "http://[::1" }), codes.InvalidArgument,
			`endpoint: malformed URL "http://[::1": want http(s)://host[:port][/path]`},
		{"relative URL", with(base, func(m *issuerv1.Model) { m.Endpoint = "/v1" }), codes.InvalidArgument,
			`endpoint: malformed URL "/v1": want http(s)://host[:port][/path]`},
		{"non-http scheme", with(base, func(m *issuerv1.Model) { m.Endpoint = "ftp://10.1.2.3/v1" }), codes.InvalidArgument,
			`endpoint: scheme "ftp" is not allowed: want http or https`},
		{"credentials in URL", with(base, func(m *issuerv1.Model) { m.Endpoint = "http://u:pw@10.1.2.3/v1" }), codes.InvalidArgument,
			`endpoint: must not contain credentials: set api_key instead`},
		{"unknown family", with(base, func(m *issuerv1.Model) { m.Family = "gpt5" }), codes.InvalidArgument,
			`family: unknown model family "gpt5": want one of mistral, mixtral, llama3, codegemma, codestral, codellama, deepseekcoder, qwen, claude_3, gpt, general`},
		{"unknown provider", with(base, func(m *issuerv1.Model) { m.Provider = "bedrock" }), codes.InvalidArgument,
			`provider: unknown provider "bedrock": want one of openai_compatible, ollama, anthropic, azure_openai, tgi`},
		{"bad CIDR", with(base, func(m *issuerv1.Model) { m.TrustedNetworks = []string{"10.0.0.0/8", "10.0.0.300/24"} }), codes.InvalidArgument,
			`trusted_networks[1]: invalid CIDR "10.0.0.300/24"`},
		{"literal IP outside trusted networks", with(base, func(m *issuerv1.Model) { m.Endpoint = "http://192.168.1.5/v1" }), codes.InvalidArgument,
			`endpoint: address 192.168.1.5 is outside the trusted networks`},
		{"literal IP with no trusted network", with(base, func(m *issuerv1.Model) { m.TrustedNetworks = nil }), codes.InvalidArgument,
			`endpoint: address 10.1.2.3 is outside the trusted networks`},
		{"IPv6 literal inside its network", with(base, func(m *issuerv1.Model) {
			m.Endpoint, m.TrustedNetworks = "http://[fd00::5]:8000/v1", []string{"fd00::/8"}
		}), codes.OK, ""},
		{"missing identifier", with(base, func(m *issuerv1.Model) { m.Identifier = " " }), codes.InvalidArgument,
			`identifier: required: the model name at the server`},
		{"fallback naming itself", with(base, func(m *issuerv1.Model) { m.Name, m.FallbackModel = "self", "self" }), codes.InvalidArgument,
			`fallback_model: a model cannot be its own fallback`},
		{"unknown fallback", with(base, func(m *issuerv1.Model) { m.Name, m.FallbackModel = "f", "ghost" }), codes.InvalidArgument,
			`fallback_model: unknown model "ghost"`},
		{"openai_compatible endpoint without a version path", with(base, func(m *issuerv1.Model) { m.Endpoint = "http://10.1.2.3:8000" }), codes.InvalidArgument,
			`endpoint: openai_compatible endpoint "http://10.1.2.3:8000" has no API version path such as /v1 (requests would go to http://10.1.2.3:8000/chat/completions): want http://host:8000/v1 (vLLM, llama.cpp, LM Studio, TGI /v1, Ollama /v1); the gateway appends /chat/completions or /completions`},
		{"api version for a provider without one", with(base, func(m *issuerv1.Model) { m.ApiVersion = "2024-10-21" }), codes.InvalidArgument,
			`api_version: only azure_openai takes an api version; provider openai_compatible does not use it: leave it empty`},
		{"duplicate name", validModel("base"), codes.AlreadyExists, `model "base": already exists`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.model
			if tc.code == codes.OK {
				m = with(m, func(m *issuerv1.Model) { m.Name = m.Name + "-ok" + string(rune('a'+i)) })
			}
			_, err := e.Models().CreateModel(ctx, &issuerv1.CreateModelRequest{Model: m})
			wantStatus(t, err, tc.code, tc.msg)
		})
	}
}

// An endpoint that already holds the API path the gateway appends is stored
// as its base, and the response shows what was stored.
func TestCreateModelStoresTheNormalisedEndpoint(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	ctx := testenv.Ctx(e.Admin)
	resp, err := e.Models().CreateModel(ctx, &issuerv1.CreateModelRequest{Model: with(validModel("full"), func(m *issuerv1.Model) {
		m.Endpoint = "http://10.1.2.3:8000/v1/chat/completions"
	})})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetModel().GetEndpoint(); got != "http://10.1.2.3:8000/v1" {
		t.Fatalf("response endpoint = %q, want http://10.1.2.3:8000/v1", got)
	}
	got, err := e.Models().GetModel(ctx, &issuerv1.GetModelRequest{Name: "full"})
	if err != nil || got.GetModel().GetEndpoint() != "http://10.1.2.3:8000/v1" {
		t.Fatalf("stored endpoint = %q, %v", got.GetModel().GetEndpoint(), err)
	}
}

func TestAPIKeyIsWriteOnly(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	resp, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: with(validModel("m"), func(m *issuerv1.Model) { m.ApiKey = apiKey })})
	if err != nil {
		t.Fatal(err)
	}
	check := func(where string, m *issuerv1.Model) {
		t.Helper()
		if m.GetApiKey() != "" || !m.GetHasApiKey() {
			t.Fatalf("%s: api_key %q has_api_key %v; want cleared and true", where, m.GetApiKey(), m.GetHasApiKey())
		}
	}
	check("CreateModel", resp.GetModel())
	got, err := e.Models().GetModel(admin, &issuerv1.GetModelRequest{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	check("GetModel", got.GetModel())
	list, err := e.Models().ListModels(testenv.Ctx(e.Gateway), &issuerv1.ListModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("ListModels", list.GetModels()[0])
	upd, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: with(validModel("m"), func(m *issuerv1.Model) { m.Identifier = "other" })})
	if err != nil {
		t.Fatal(err)
	}
	check("UpdateModel keeps the key", upd.GetModel())

	// Only the gateway's watch carries the key.
	w, err := e.Models().WatchModels(testenv.Ctx(e.Gateway), &issuerv1.WatchModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetModels()[0].GetApiKey() != apiKey {
		t.Fatal("WatchModels does not deliver the API key to the gateway")
	}
	for _, pat := range []string{e.Admin, e.User} {
		aw, err := e.Models().WatchModels(testenv.Ctx(pat), &issuerv1.WatchModelsRequest{})
		if err == nil {
			_, err = aw.Recv()
		}
		wantStatus(t, err, codes.PermissionDenied, "permission denied: requires ROLE_GATEWAY")
	}

	// Clearing the key.
	upd, err = e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: validModel("m"), ClearApiKey: true})
	if err != nil || upd.GetModel().GetHasApiKey() {
		t.Fatalf("clear_api_key: %v %v", upd, err)
	}
	_, err = e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: with(validModel("m"), func(m *issuerv1.Model) { m.ApiKey = "x" }), ClearApiKey: true})
	wantStatus(t, err, codes.InvalidArgument, "clear_api_key: cannot be combined with a new api_key")
	_, err = e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: validModel("nope")})
	wantStatus(t, err, codes.NotFound, `model "nope": not found`)

	// The key is nowhere in clear: not in the database file, not in the log.
	if _, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: with(validModel("m"), func(m *issuerv1.Model) { m.ApiKey = apiKey })}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.Logs.String(), apiKey) {
		t.Fatal("API key in the log")
	}
	e.Store.Close()
	raw, err := os.ReadFile(filepath.Join(e.Dir, boltstore.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(apiKey)) || bytes.Contains(raw, []byte(apiKey[8:24])) {
		t.Fatal("API key in clear in the store file")
	}
}

func TestDeleteAndFeatureSettings(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	for _, m := range []*issuerv1.Model{validModel("a"), with(validModel("b"), func(m *issuerv1.Model) { m.FallbackModel = "a" })} {
		if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: m}); err != nil {
			t.Fatal(err)
		}
	}
	set := func(fs *issuerv1.FeatureSetting) error {
		_, err := e.Models().SetFeatureSetting(admin, &issuerv1.SetFeatureSettingRequest{Setting: fs})
		return err
	}
	tests := []struct {
		name string
		run  func() error
		code codes.Code
		msg  string
	}{
		{"bind a feature", func() error { return set(&issuerv1.FeatureSetting{Feature: "duo_chat", Model: "b"}) }, codes.OK, ""},
		{"unknown feature", func() error { return set(&issuerv1.FeatureSetting{Feature: "chat", Model: "b"}) }, codes.InvalidArgument,
			`setting.feature: unknown feature "chat": want one of code_completions, code_generations, duo_chat`},
		{"unknown model", func() error { return set(&issuerv1.FeatureSetting{Feature: "duo_chat", Model: "zz"}) }, codes.FailedPrecondition,
			`setting.model: model "zz" does not exist`},
		{"model and disabled", func() error { return set(&issuerv1.FeatureSetting{Feature: "duo_chat", Model: "a", Disabled: true}) }, codes.InvalidArgument,
			"setting: set model or disabled, not both"},
		{"neither model nor disabled", func() error { return set(&issuerv1.FeatureSetting{Feature: "duo_chat"}) }, codes.InvalidArgument,
			"setting: set model, or disabled to turn the feature off"},
		{"fallback cycle", func() error {
			_, err := e.Models().UpdateModel(admin, &issuerv1.UpdateModelRequest{Model: with(validModel("a"), func(m *issuerv1.Model) { m.FallbackModel = "b" })})
			return err
		}, codes.InvalidArgument, `fallback_model: fallback chain through "a" forms a cycle`},
		{"delete a model a feature uses", func() error {
			_, err := e.Models().DeleteModel(admin, &issuerv1.DeleteModelRequest{Name: "b"})
			return err
		}, codes.FailedPrecondition, `model "b" is used by feature "duo_chat": in use`},
		{"delete a fallback target", func() error {
			_, err := e.Models().DeleteModel(admin, &issuerv1.DeleteModelRequest{Name: "a"})
			return err
		}, codes.FailedPrecondition, `model "a" is the fallback of model "b": in use`},
		{"delete unknown", func() error {
			_, err := e.Models().DeleteModel(admin, &issuerv1.DeleteModelRequest{Name: "zz"})
			return err
		}, codes.NotFound, `model "zz": not found`},
		{"disable, then delete", func() error {
			if err := set(&issuerv1.FeatureSetting{Feature: "duo_chat", Disabled: true}); err != nil {
				return err
			}
			_, err := e.Models().DeleteModel(admin, &issuerv1.DeleteModelRequest{Name: "b"})
			return err
		}, codes.OK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantStatus(t, tc.run(), tc.code, tc.msg) })
	}
}

func TestWatchModelsPushesAtOnceAndSkipsKnownRevision(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	admin := testenv.Ctx(e.Admin)
	ctx, cancel := context.WithCancel(testenv.Ctx(e.Gateway))
	defer cancel()
	if _, err := e.Models().WatchModels(ctx, &issuerv1.WatchModelsRequest{}); err != nil { // never read
		t.Fatal(err)
	}
	w, err := e.Models().WatchModels(ctx, &issuerv1.WatchModelsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := w.Recv()
	if err != nil || len(first.GetModels()) != 0 {
		t.Fatalf("first snapshot %v %v; want the empty configuration", first, err)
	}
	if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: validModel("a")}); err != nil {
		t.Fatal(err)
	}
	snap, err := w.Recv()
	if err != nil || len(snap.GetModels()) != 1 || snap.GetRevision() <= first.GetRevision() {
		t.Fatalf("after create: %v %v", snap, err)
	}
	start := time.Now()
	if _, err := e.Models().SetFeatureSetting(admin, &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "code_completions", Model: "a"}}); err != nil {
		t.Fatal(err)
	}
	snap, err = w.Recv()
	if err != nil || len(snap.GetSettings()) != 1 || snap.GetSettings()[0].GetModel() != "a" {
		t.Fatalf("after setting: %v %v", snap, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("feature setting reached the watcher after %v", d)
	}
	// A client that already holds the revision gets nothing until a change.
	w2, err := e.Models().WatchModels(ctx, &issuerv1.WatchModelsRequest{KnownRevision: snap.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Models().CreateModel(admin, &issuerv1.CreateModelRequest{Model: validModel("b")}); err != nil {
		t.Fatal(err)
	}
	next, err := w2.Recv()
	if err != nil || next.GetRevision() <= snap.GetRevision() || len(next.GetModels()) != 2 {
		t.Fatalf("known-revision watcher got %v %v", next, err)
	}
}

func TestRegistrySizeLimit(t *testing.T) {
	e := testenv.New(t, testenv.Options{MaxModels: 2})
	ctx := testenv.Ctx(e.Admin)
	for _, n := range []string{"one", "two"} {
		if _, err := e.Models().CreateModel(ctx, &issuerv1.CreateModelRequest{Model: validModel(n)}); err != nil {
			t.Fatalf("CreateModel(%s) within the limit: %v", n, err)
		}
	}
	_, err := e.Models().CreateModel(ctx, &issuerv1.CreateModelRequest{Model: validModel("three")})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != "model limit reached (2 models, limit 2): delete one first" {
		t.Fatalf("third model = %v, want ResourceExhausted", err)
	}
}
