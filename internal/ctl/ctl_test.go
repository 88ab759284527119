package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseGlobals(t *testing.T) {
	defaults := globals{issuer: defaultIssuer, gateway: defaultGateway, timeout: defaultTimeout}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    globals
		wantErr string
	}{
		{name: "defaults without flags or env", args: []string{"model", "list"}, want: defaults},
		{name: "env sets every global", args: []string{"model", "list"},
			env: map[string]string{"AIRLOCK_ISSUER_ADDR": "i:1", "AIRLOCK_GATEWAY_ADDR": "g:2", "AIRLOCK_TOKEN_FILE": "/pat",
				"AIRLOCK_CA": "/ca", "AIRLOCK_CERT": "/c", "AIRLOCK_KEY": "/k", "AIRLOCK_TIMEOUT": "5s"},
			want: globals{issuer: "i:1", gateway: "g:2", tokenFile: "/pat", ca: "/ca", cert: "/c", key: "/k", timeout: 5 * time.Second}},
		{name: "AIRLOCK_PLAINTEXT=true turns on plaintext", args: []string{"model", "list"}, env: map[string]string{"AIRLOCK_PLAINTEXT": "true"},
			want: globals{issuer: defaultIssuer, gateway: defaultGateway, timeout: defaultTimeout, plaintext: true}},
		{name: "flags beat env", args: []string{"--issuer", "flag:1", "--timeout", "1m", "model", "list"},
			env:  map[string]string{"AIRLOCK_ISSUER_ADDR": "env:1", "AIRLOCK_TIMEOUT": "5s"},
			want: globals{issuer: "flag:1", gateway: defaultGateway, timeout: time.Minute}},
		{name: "globals may follow the command", args: []string{"token", "mint", "--gateway", "g:9", "--plaintext", "--ttl", "5m"},
			want: globals{issuer: defaultIssuer, gateway: "g:9", timeout: defaultTimeout, plaintext: true}},
		{name: "global after command beats env", args: []string{"keys", "get", "--issuer=after:1"}, env: map[string]string{"AIRLOCK_ISSUER_ADDR": "env:1"},
			want: globals{issuer: "after:1", gateway: defaultGateway, timeout: defaultTimeout}},
		{name: "malformed env names the variable", args: []string{"model", "list"}, env: map[string]string{"AIRLOCK_TIMEOUT": "soon"},
			wantErr: `env AIRLOCK_TIMEOUT: invalid value "soon": parse error`},
		{name: "plaintext conflicts with TLS files", args: []string{"--plaintext", "--ca", "/ca", "model", "list"},
			wantErr: "--plaintext conflicts with --ca/--cert/--key"},
		{name: "client certificate needs its key", args: []string{"--cert", "/c", "model", "list"},
			wantErr: "--cert and --key must be given together"},
		{name: "non-positive timeout", args: []string{"--timeout", "0s", "model", "list"}, wantErr: "--timeout must be positive"},
		{name: "unknown global flag", args: []string{"--bogus", "model", "list"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "unknown command flag", args: []string{"model", "list", "--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "no command", args: nil, wantErr: "no command given"},
		{name: "unknown command", args: []string{"model", "frobnicate"}, wantErr: `unknown command "model frobnicate"`},
		{name: "stray argument", args: []string{"model", "list", "extra"}, wantErr: `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cli{io: IO{Getenv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}}
			_, _, err := c.parse(tc.args)
			if tc.wantErr != "" {
				var ue *usageError
				if !errors.As(err, &ue) || ue.msg != tc.wantErr {
					t.Fatalf("err = %v, want usage error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.g != tc.want {
				t.Fatalf("globals = %+v, want %+v", c.g, tc.want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	cl := newCluster(t)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{name: "model update with nothing to change is a usage error", args: []string{"model", "update", "--name", "m"}, code: 2,
			stderr: "airlockctl: InvalidArgument: nothing to update: set at least one of --family, --provider, --endpoint, --identifier, --api-key-file, --trusted-network, --fallback, --api-version, --clear-api-key\n" +
				"usage: airlockctl model update --name N [any flag of create: only the fields given change; --fallback \"\" removes the fallback] [--clear-api-key] [--json]\n"},
		{name: "usage error exits 2 with the command's usage", args: []string{"model", "get"}, code: 2,
			stderr: "airlockctl: InvalidArgument: --name is required\nusage: airlockctl model get --name N [--json]\n"},
		{name: "server error exits 1 as code: message", args: []string{"model", "get", "--name", "nope"}, code: 1,
			stderr: "airlockctl: NotFound: model \"nope\" not found\n"},
		{name: "precondition failure keeps its code", args: []string{"model", "delete", "--name", "in-use"}, code: 1,
			stderr: "airlockctl: FailedPrecondition: model \"in-use\" serves duo_chat\n"},
		{name: "wrong PAT is Unauthenticated", env: map[string]string{"AIRLOCK_TOKEN": "glpat-wrong"}, args: []string{"model", "list"}, code: 1,
			stderr: "airlockctl: Unauthenticated: invalid personal access token\n"},
		{name: "missing PAT is a usage error", env: map[string]string{"AIRLOCK_TOKEN": ""}, args: []string{"model", "list"}, code: 2,
			stderr: "airlockctl: InvalidArgument: no personal access token: give --token-file or set AIRLOCK_TOKEN\nusage: airlockctl model list [--json]\n"},
		{name: "feature set needs exactly one target", args: []string{"feature", "set", "--feature", "duo_chat", "--model", "m", "--disabled"}, code: 2,
			stderr: "airlockctl: InvalidArgument: give exactly one of --model and --disabled\nusage: airlockctl feature set --feature F (--model M | --disabled) [--json]\n"},
		{name: "api version is refused where it means nothing", args: []string{"model", "create", "--name", "m", "--provider", "ollama", "--api-version", "2024-10-21"}, code: 2,
			stderr: "airlockctl: InvalidArgument: --api-version is for --provider azure_openai only; ollama has no api version\nusage: airlockctl model create --name N --family F --provider P --endpoint URL --identifier ID [--api-key-file F] [--trusted-network CIDR]... [--fallback M] [--api-version V (azure_openai)] [--json]\n"},
		{name: "pat create --force needs --out", args: []string{"pat", "create", "--username", "demo", "--force"}, code: 2,
			stderr: "airlockctl: InvalidArgument: --force needs --out\nusage: airlockctl pat create --username U [--expires 720h] [--out FILE [--force]]\n"},
		{name: "help exits 0", args: []string{"help"}, code: 0},
		{name: "command help exits 0", args: []string{"token", "mint", "-h"}, code: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cl.run(t, "", tc.env, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit = %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if tc.stderr != "" && r.stderr != tc.stderr {
				t.Fatalf("stderr = %q, want %q", r.stderr, tc.stderr)
			}
		})
	}
}

func TestAdminCommandsSendRequests(t *testing.T) {
	cl := newCluster(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api.key")
	if err := os.WriteFile(keyFile, []byte(modelAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	full := &issuerv1.Model{Name: "vllm", Family: "mixtral", Provider: "openai_compatible", Endpoint: "http://10.1.2.3:8000/v1",
		Identifier: "custom_openai/Mixtral-8x7B", ApiKey: modelAPIKey, TrustedNetworks: []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8"},
		FallbackModel: "stub"}
	modelArgs := []string{"--name", "vllm", "--family", "mixtral", "--provider", "openai_compatible", "--endpoint", "http://10.1.2.3:8000/v1",
		"--identifier", "custom_openai/Mixtral-8x7B", "--trusted-network", "10.0.0.0/8,192.168.0.0/16", "--trusted-network", "fd00::/8",
		"--fallback", "stub"}
	noKey := proto.Clone(full).(*issuerv1.Model)
	noKey.ApiKey = ""
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	everyField := []string{"family", "provider", "endpoint", "identifier", "trusted_networks", "fallback_model", "api_version"}

	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		method string
		want   proto.Message
		stdout []string // substrings
	}{
		{name: "model create with key file", args: append([]string{"model", "create", "--api-key-file", keyFile}, modelArgs...), method: "CreateModel",
			want: &issuerv1.CreateModelRequest{Model: full}, stdout: []string{"name:", "vllm", "api key:", "set", "10.0.0.0/8,192.168.0.0/16,fd00::/8"}},
		{name: "model create with key from env", env: map[string]string{"AIRLOCK_MODEL_API_KEY": modelAPIKey}, args: append([]string{"model", "create"}, modelArgs...),
			method: "CreateModel", want: &issuerv1.CreateModelRequest{Model: full}},
		{name: "model update with every flag names every field but the key", args: append([]string{"model", "update"}, modelArgs...), method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: noKey, UpdateMask: mask(everyField...)}},
		{name: "model update clears the key", args: append([]string{"model", "update", "--clear-api-key"}, modelArgs...), method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: noKey, ClearApiKey: true, UpdateMask: mask(everyField...)}},
		{name: "model update changes only the fallback", args: []string{"model", "update", "--name", "vllm", "--fallback", "stub"}, method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "vllm", FallbackModel: "stub"}, UpdateMask: mask("fallback_model")}},
		{name: "model update with an empty fallback removes it", args: []string{"model", "update", "--name", "vllm", "--fallback", ""}, method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "vllm"}, UpdateMask: mask("fallback_model")}},
		{name: "model update of the key alone", args: []string{"model", "update", "--name", "vllm", "--api-key-file", keyFile}, method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "vllm", ApiKey: modelAPIKey}, UpdateMask: mask("api_key")}},
		{name: "model update with the key from env names it", env: map[string]string{"AIRLOCK_MODEL_API_KEY": modelAPIKey},
			args: []string{"model", "update", "--name", "vllm", "--identifier", "x"}, method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "vllm", Identifier: "x", ApiKey: modelAPIKey}, UpdateMask: mask("identifier", "api_key")}},
		{name: "model update that only clears the key", args: []string{"model", "update", "--name", "vllm", "--clear-api-key"}, method: "UpdateModel",
			want: &issuerv1.UpdateModelRequest{Model: &issuerv1.Model{Name: "vllm"}, ClearApiKey: true, UpdateMask: mask()}},
		{name: "model get", args: []string{"model", "get", "--name", "stub"}, method: "GetModel", want: &issuerv1.GetModelRequest{Name: "stub"},
			stdout: []string{"endpoint:", "http://127.0.0.1:9460/v1"}},
		{name: "model get as JSON", args: []string{"model", "get", "--name", "stub", "--json"}, method: "GetModel", want: &issuerv1.GetModelRequest{Name: "stub"},
			stdout: []string{`"name": "stub"`, `"hasApiKey": true`}},
		{name: "model list", args: []string{"model", "list"}, method: "ListModels", want: &issuerv1.ListModelsRequest{},
			stdout: []string{"NAME", "FALLBACK", "a ", "b ", "ollama"}},
		{name: "model list as JSON", args: []string{"model", "list", "--json"}, method: "ListModels", want: &issuerv1.ListModelsRequest{},
			stdout: []string{`"models": [`, `"fallbackModel": "a"`}},
		{name: "model delete", args: []string{"model", "delete", "--name", "old"}, method: "DeleteModel", want: &issuerv1.DeleteModelRequest{Name: "old"},
			stdout: []string{"deleted model old"}},
		{name: "feature set to a model", args: []string{"feature", "set", "--feature", "duo_chat", "--model", "vllm"}, method: "SetFeatureSetting",
			want: &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "duo_chat", Model: "vllm"}}, stdout: []string{"duo_chat: vllm"}},
		{name: "feature disabled", args: []string{"feature", "set", "--feature", "code_generations", "--disabled"}, method: "SetFeatureSetting",
			want: &issuerv1.SetFeatureSettingRequest{Setting: &issuerv1.FeatureSetting{Feature: "code_generations", Disabled: true}}, stdout: []string{"code_generations: disabled"}},
		{name: "feature list", args: []string{"feature", "list"}, method: "ListFeatureSettings", want: &issuerv1.ListFeatureSettingsRequest{},
			stdout: []string{"code_completions  a", "duo_chat          disabled"}},
		{name: "keys get", args: []string{"keys", "get"}, method: "GetKeys", want: &issuerv1.GetKeysRequest{},
			stdout: []string{"revision 7", "k1", "RS256", "active", "2026-05-06T07:08:09Z"}},
		{name: "keys get JWKS", args: []string{"keys", "get", "--jwks"}, method: "GetKeys", want: &issuerv1.GetKeysRequest{},
			stdout: []string{`{"keys":[{"kty":"RSA","kid":"k1"`}},
		{name: "keys rotate", args: []string{"keys", "rotate"}, method: "RotateKeys", want: &issuerv1.RotateKeysRequest{}, stdout: []string{"revision 7"}},
		{name: "user create", args: []string{"user", "create", "--username", "ci", "--role", "gateway", "--features", "duo_chat,code_completions"},
			method: "CreateUser", want: &issuerv1.CreateUserRequest{User: &issuerv1.User{Username: "ci", Role: issuerv1.Role_ROLE_GATEWAY, EntitledFeatures: []string{"duo_chat", "code_completions"}}},
			stdout: []string{"created user ci (id 42, role gateway, features duo_chat,code_completions)"}},
		{name: "user list", args: []string{"user", "list"}, method: "ListUsers", want: &issuerv1.ListUsersRequest{}, stdout: []string{"admin", "1", "admin"}},
		{name: "pat revoke", args: []string{"pat", "revoke", "--id", "pat-3"}, method: "RevokePersonalAccessToken",
			want: &issuerv1.RevokePersonalAccessTokenRequest{Id: "pat-3"}, stdout: []string{"revoked personal access token pat-3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cl.run(t, "", tc.env, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := cl.rec.get(tc.method); !proto.Equal(got, tc.want) {
				t.Errorf("request:\n got %v\nwant %v", got, tc.want)
			}
			for _, s := range tc.stdout {
				// protojson varies its whitespace on purpose; compare JSON without it.
				if !strings.Contains(r.stdout, s) && !strings.Contains(noSpace(r.stdout), noSpace(s)) {
					t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
				}
			}
		})
	}
}

// --out writes an owner-only file and refuses to overwrite one unless told
// to, before any token is created.
func TestPATCreateOutWritesAnOwnerOnlyFile(t *testing.T) {
	cl := newCluster(t)
	out := filepath.Join(t.TempDir(), "ci-bot.token")
	r := cl.run(t, "", nil, "pat", "create", "--username", "demo", "--out", out)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != newPATValue+"\n" {
		t.Fatalf("file = %q, %v", b, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}

	cl.rec.reset()
	r = cl.run(t, "", nil, "pat", "create", "--username", "demo", "--out", out)
	if r.code != 2 || !strings.Contains(r.stderr, "exists: give --force") {
		t.Fatalf("overwrite without --force: exit %d stderr %q", r.code, r.stderr)
	}
	if cl.rec.get("CreatePersonalAccessToken") != nil {
		t.Fatal("a token was created although it could not be written")
	}

	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}
	r = cl.run(t, "", nil, "pat", "create", "--username", "demo", "--out", out, "--force")
	if r.code != 0 {
		t.Fatalf("--force: exit %d stderr %q", r.code, r.stderr)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("replaced file mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestPATCreatePrintsOnlyTheSecret(t *testing.T) {
	cl := newCluster(t)
	before := time.Now()
	r := cl.run(t, "", nil, "pat", "create", "--username", "demo", "--expires", "48h")
	if r.code != 0 || r.stdout != newPATValue+"\n" {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	req := cl.rec.get("CreatePersonalAccessToken").(*issuerv1.CreatePersonalAccessTokenRequest)
	exp := req.GetExpireTime().AsTime()
	if req.GetUsername() != "demo" || exp.Before(before.Add(48*time.Hour)) || exp.After(time.Now().Add(48*time.Hour)) {
		t.Fatalf("request = %v", req)
	}
}

func TestTokenMintAndRevoke(t *testing.T) {
	cl := newCluster(t)
	patFile := filepath.Join(t.TempDir(), "pat")
	if err := os.WriteFile(patFile, []byte(adminPAT+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The PAT from --token-file, with AIRLOCK_TOKEN unset.
	r := cl.run(t, "", map[string]string{"AIRLOCK_TOKEN": ""}, "token", "mint", "--token-file", patFile, "--features", "duo_chat")
	if r.code != 0 || strings.Count(r.stdout, ".") != 2 || !strings.HasSuffix(r.stdout, "\n") {
		t.Fatalf("mint: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r = cl.run(t, "", nil, "token", "mint", "--json", "--ttl", "10m")
	var resp issuerv1.MintTokenResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("mint --json output is not a MintTokenResponse: %v\n%s", err, r.stdout)
	}
	if resp.GetJti() != "jti-2" || resp.GetToken() == "" || resp.GetMetadata()["x-gitlab-instance-id"] != clienttest.InstanceID || len(resp.GetScopes()) != 3 {
		t.Errorf("mint --json = %v", &resp)
	}
	r = cl.run(t, "", nil, "token", "mint", "--format", "env")
	want := "AIRLOCK_JTI='jti-3'\nAIRLOCK_INSTANCE_ID='" + clienttest.InstanceID + "'\n"
	if r.code != 0 || !strings.HasPrefix(r.stdout, "AIRLOCK_JWT='") || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "AIRLOCK_GLOBAL_USER_ID='") {
		t.Fatalf("mint --format env: exit %d stdout %q", r.code, r.stdout)
	}
	if r = cl.run(t, "", nil, "token", "mint", "--format", "yaml"); r.code != 2 {
		t.Fatalf("mint --format yaml: exit %d, want 2", r.code)
	}
	r = cl.run(t, "", nil, "token", "revoke", "--jti", "jti-1")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "revoked jti-1 (expires ") {
		t.Fatalf("revoke: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r = cl.run(t, "", nil, "token", "mint", "--features", "bogus")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "airlockctl: InvalidArgument: unknown feature \"bogus\"") {
		t.Fatalf("bad feature: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestCompleteStreamsToStdout(t *testing.T) {
	cl := newCluster(t)
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
	}{
		{"prompt flag, streaming", "", []string{"complete", "--feature", "duo_chat", "--prompt", "hi", "--max-tokens", "64"}},
		{"prompt on stdin, streaming", "hi from stdin", []string{"complete", "--feature", "duo_chat"}},
		{"unary", "", []string{"complete", "--feature", "code_generations", "--prompt", "hi", "--unary"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cl.run(t, tc.stdin, nil, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if r.stdout != "Hello from the fake gateway.\n" {
				t.Errorf("stdout = %q", r.stdout)
			}
			if r.stderr != "finish=stop model=fake-model prompt_tokens=1 completion_tokens=5\n" {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
	reqs := cl.gw.Requests()
	if got := reqs[0].GetOptions().GetMaxTokens(); got != 64 {
		t.Errorf("max tokens = %d, want 64", got)
	}
	if got := reqs[1].GetMessages()[0].GetContent(); got != "hi from stdin" {
		t.Errorf("stdin prompt = %q", got)
	}
}

func TestCompleteErrors(t *testing.T) {
	cl := newCluster(t)
	// A JWT minted for duo_chat only, then revoked.
	jwt := strings.TrimSpace(cl.run(t, "", nil, "token", "mint", "--features", "duo_chat").stdout)
	r := cl.run(t, "", nil, "complete", "--feature", "duo_chat", "--prompt", "hi", "--jwt", jwt)
	if r.code != 0 || r.stdout != "Hello from the fake gateway.\n" {
		t.Fatalf("--jwt: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "token without the scope", args: []string{"--jwt", jwt, "--feature", "code_completions"}, code: 1,
			stderr: "airlockctl: PermissionDenied: Unauthorized to access code completions\n"},
		{name: "malformed jwt is a usage error", args: []string{"--jwt", "not-a-jwt", "--feature", "duo_chat"}, code: 2,
			stderr: "airlockctl: InvalidArgument: --jwt: jwt: want 3 dot-separated segments, got 1\nusage: airlockctl complete --feature F [--prompt TEXT | stdin] [--max-tokens N] [--jwt TOKEN] [--unary]\n"},
		{name: "bad PAT fails the mint", env: map[string]string{"AIRLOCK_TOKEN": "glpat-wrong"}, args: []string{"--feature", "duo_chat"}, code: 1,
			stderr: "airlockctl: Unauthenticated: mint token: invalid personal access token\n"},
		{name: "feature required", args: []string{}, code: 2},
		{name: "unknown feature keeps the issuer's code", args: []string{"--feature", "poetry"}, code: 1,
			stderr: "airlockctl: InvalidArgument: mint token: unknown feature \"poetry\": want one of code_completions, code_generations, duo_chat\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cl.run(t, "", tc.env, append([]string{"complete", "--prompt", "hi"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit = %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if tc.stderr != "" && r.stderr != tc.stderr {
				t.Errorf("stderr = %q, want %q", r.stderr, tc.stderr)
			}
			if r.stdout != tc.stdout {
				t.Errorf("stdout = %q, want %q", r.stdout, tc.stdout)
			}
		})
	}

	// An error after text keeps the text, ends the line, and reports the code.
	cl.gw.FailWith(clienttest.RateLimited(time.Second))
	r = cl.run(t, "", nil, "complete", "--feature", "duo_chat", "--prompt", "hi")
	if r.code != 1 || r.stdout != "Hello \n" || r.stderr != "airlockctl: ResourceExhausted: model server rate limit exceeded\n" {
		t.Fatalf("mid-stream error: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestTLS(t *testing.T) {
	cl := newCluster(t, clienttest.WithTLS())
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, cl.srv.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cl.run(t, "", map[string]string{"AIRLOCK_PLAINTEXT": "", "AIRLOCK_CA": caFile}, "complete", "--feature", "duo_chat", "--prompt", "hi")
	if r.code != 0 || r.stdout != "Hello from the fake gateway.\n" {
		t.Fatalf("TLS with --ca: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	r = cl.run(t, "", map[string]string{"AIRLOCK_PLAINTEXT": ""}, "model", "list")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "airlockctl: Unavailable: ") || !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, "--ca") {
		t.Fatalf("TLS without trusting the CA: exit %d stderr %q, want a hint naming --ca", r.code, r.stderr)
	}
	r = cl.run(t, "", map[string]string{"AIRLOCK_PLAINTEXT": "true"}, "model", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, "connect with TLS") {
		t.Fatalf("plaintext to a TLS server: exit %d stderr %q, want a hint to use TLS", r.code, r.stderr)
	}
}

func TestHealthcheck(t *testing.T) {
	cl := newCluster(t)
	cl.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	cl.health.SetServingStatus("airlock.gateway.v1.CompletionService", healthpb.HealthCheckResponse_NOT_SERVING)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"serving server", []string{"healthcheck"}, 0},
		{"serving server by address", []string{"healthcheck", "--addr", cl.srv.Addr()}, 0},
		{"not serving service", []string{"healthcheck", "--service", "airlock.gateway.v1.CompletionService"}, 1},
		{"nothing listening", []string{"healthcheck", "--addr", "127.0.0.1:1", "--timeout", "2s"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cl.run(t, "", nil, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit = %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			if tc.code == 0 && r.stdout != "SERVING\n" {
				t.Errorf("stdout = %q", r.stdout)
			}
			if tc.code != 0 && !strings.HasPrefix(r.stderr, "airlockctl: Unavailable: health check") {
				t.Errorf("stderr = %q", r.stderr)
			}
		})
	}
}

func TestCert(t *testing.T) {
	dir := t.TempDir()
	ca, out := filepath.Join(dir, "ca"), filepath.Join(dir, "certs")
	env := map[string]string{}
	if r := runCtl(t, "", env, "cert", "ca", "--out", ca); r.code != 0 {
		t.Fatalf("cert ca: exit %d %s", r.code, r.stderr)
	}
	if r := runCtl(t, "", env, "cert", "ca", "--out", ca); r.code != 1 || !strings.HasPrefix(r.stderr, "airlockctl: AlreadyExists: ") {
		t.Fatalf("second cert ca: exit %d %q", r.code, r.stderr)
	}
	r := runCtl(t, "", env, "cert", "issue", "--ca-dir", ca, "--name", "gateway", "--dns", "gateway,localhost", "--ip", "127.0.0.1", "--out", out)
	if r.code != 0 {
		t.Fatalf("cert issue: exit %d %s", r.code, r.stderr)
	}
	for _, f := range []string{filepath.Join(ca, "ca.crt"), filepath.Join(ca, "ca.key"), filepath.Join(out, "gateway.crt"), filepath.Join(out, "gateway.key")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if r := runCtl(t, "", env, "cert", "issue", "--ca-dir", ca, "--name", "x", "--ip", "not-an-ip", "--out", out); r.code != 2 {
		t.Fatalf("bad --ip: exit %d %q", r.code, r.stderr)
	}
}

func noSpace(s string) string { return strings.Join(strings.Fields(s), "") }
