package restapi_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/api/limits"
	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/minter"
	"github.com/airlock-dev/airlock/issuer/pat"
	"github.com/airlock-dev/airlock/issuer/restapi"
	"github.com/airlock-dev/airlock/issuer/store"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeGateway is the gateway's HTTP API: it records each request and
// answers with the test's handler (default: 200 JSON).
type fakeGateway struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	handler http.HandlerFunc
}

type seen struct {
	path   string
	header http.Header
	body   map[string]any
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		g.mu.Lock()
		g.reqs = append(g.reqs, seen{r.URL.Path, r.Header.Clone(), body})
		h := g.handler
		g.mu.Unlock()
		if h == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"choices":[{"text":"hi","index":0,"finish_reason":"length"}]}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) setHandler(h http.HandlerFunc) { g.mu.Lock(); g.handler = h; g.mu.Unlock() }

func (g *fakeGateway) last(t *testing.T) seen {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reqs) == 0 {
		t.Fatal("the gateway received no request")
	}
	return g.reqs[len(g.reqs)-1]
}

func (g *fakeGateway) count() int { g.mu.Lock(); defer g.mu.Unlock(); return len(g.reqs) }

// rig is the REST API over a real store, minter and PAT lookup
// (issuer/internal/testenv), in front of a fake gateway.
type rig struct {
	e       *testenv.Env
	gw      *fakeGateway
	srv     *httptest.Server
	expired string // an expired PAT of "user"
	revoked string // a revoked PAT of "user"
}

type rigOptions struct {
	mintRate  int
	lockout   int // invalid PATs per address per minute (0: none)
	noGateway bool
	timeout   time.Duration
	gatewayTo string // a base URL instead of the fake gateway
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	e := testenv.New(t, testenv.Options{})
	r := &rig{e: e, gw: newFakeGateway(t)}
	mint, err := minter.New(minter.Config{Signer: e.Keys, Recorder: e.Store, GlobalIDs: e.GlobalIDs, Issuer: testenv.Issuer,
		InstanceID: e.InstanceID, MaxTTL: time.Hour, Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := restapi.Config{PATs: authn.NewPATs(e.Store, e.Clock.Now, authn.NewLockout(o.lockout)), Minter: mint, Limiter: limits.NewRate(o.mintRate),
		GlobalIDs: e.GlobalIDs, InstanceID: e.InstanceID, InstanceURL: testenv.Issuer, HostName: "gitlab.example",
		ForwardTimeout: o.timeout, Logger: zerolog.New(e.Logs), Now: e.Clock.Now}
	if !o.noGateway {
		base := r.gw.URL
		if o.gatewayTo != "" {
			base = o.gatewayTo
		}
		gw, err := restapi.NewHTTPGateway(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gw.Close)
		cfg.Gateway, cfg.GatewayURL = gw, "http://gateway.example:9452"
	}
	api, err := restapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(api)
	t.Cleanup(r.srv.Close)

	ctx := context.Background()
	u := e.Users["user"]
	var p store.PAT
	p, r.expired, err = pat.Issue(ctx, e.Store, u, testenv.Start.Add(-2*time.Hour), testenv.Start.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_ = p
	p, r.revoked, err = pat.Issue(ctx, e.Store, u, testenv.Start, testenv.Start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.UsersClient().RevokePersonalAccessToken(testenv.Ctx(e.Admin), &issuerv1.RevokePersonalAccessTokenRequest{Id: p.ID}); err != nil {
		t.Fatal(err)
	}
	return r
}

// call sends method path with body and headers (alternating names and
// values) and returns the status, the headers and the body.
func (r *rig) call(t *testing.T, method, path, body string, kv ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func asJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, s)
	}
	return m
}

// claims decodes a JWT's payload (the signature is the minter's business,
// tested there; here what matters is what was minted).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return asJSON(t, string(b))
}

const completionBody = `{"current_file":{"file_name":"a.go","content_above_cursor":"func main() {","content_below_cursor":"}"},"intent":"completion"}`

// Every route authenticates as GitLab does: PRIVATE-TOKEN or a bearer
// PAT, and GitLab's 401 body for anything else.
func TestAuthentication(t *testing.T) {
	r := newRig(t, rigOptions{})
	routes := []struct {
		method, path, body string
		ok                 int
	}{
		{"GET", restapi.PathVersion, "", 200},
		{"GET", restapi.PathUser, "", 200},
		{"GET", restapi.PathPATSelf, "", 200},
		{"POST", restapi.PathDirectAccess, "", 201},
		{"POST", restapi.PathCompletions, completionBody, 200},
		{"POST", restapi.PathConnectionDetails, "", 201},
		{"POST", restapi.PathEnabled, `{"project_path":"group/project"}`, 200},
	}
	const unauthorized = `{"message":"401 Unauthorized"}` + "\n"
	creds := []struct {
		name     string
		headers  []string
		wantCode int
	}{
		{"PRIVATE-TOKEN header is accepted", []string{"PRIVATE-TOKEN", r.e.User}, 0},
		{"bearer PAT is accepted", []string{"Authorization", "Bearer " + r.e.User}, 0},
		{"PRIVATE-TOKEN decides over a bearer", []string{"PRIVATE-TOKEN", r.e.User, "Authorization", "Bearer wrong"}, 0},
		{"no credential is 401", nil, 401},
		{"unknown PAT is 401", []string{"PRIVATE-TOKEN", "airlock_pat_" + strings.Repeat("x", 40)}, 401},
		{"malformed PAT is 401", []string{"PRIVATE-TOKEN", "not-a-pat"}, 401},
		{"expired PAT is 401", []string{"PRIVATE-TOKEN", r.expired}, 401},
		{"revoked PAT is 401", []string{"Authorization", "Bearer " + r.revoked}, 401},
		{"two PRIVATE-TOKEN headers are 401", []string{"PRIVATE-TOKEN", r.e.User, "PRIVATE-TOKEN", r.e.User}, 401},
		{"another scheme is 401", []string{"Authorization", "Basic " + r.e.User}, 401},
		{"a bearer with two spaces is 401", []string{"Authorization", "Bearer  " + r.e.User}, 401},
	}
	for _, rt := range routes {
		for _, c := range creds {
			t.Run(rt.path+"/"+c.name, func(t *testing.T) {
				code, _, body := r.call(t, rt.method, rt.path, rt.body, c.headers...)
				want := c.wantCode
				if want == 0 {
					want = rt.ok
				}
				if code != want {
					t.Fatalf("status %d, want %d: %s", code, want, body)
				}
				if want == 401 && body != unauthorized {
					t.Fatalf("body %q, want %q", body, unauthorized)
				}
			})
		}
	}
	if strings.Contains(r.e.Logs.String(), r.e.User) {
		t.Fatal("a PAT was logged")
	}
}

// The code suggestions routes need a user entitled to a code feature.
func TestCodeSuggestionsNeedEntitlement(t *testing.T) {
	r := newRig(t, rigOptions{})
	for _, who := range []struct{ name, pat string }{{"duo_chat only", r.e.Chat}, {"no features", r.e.Nothing},
		{"the gateway's service account", r.e.Gateway}, {"an administrator without features", r.e.Admin}} {
		for _, rt := range []struct{ path, body string }{
			{restapi.PathDirectAccess, ""}, {restapi.PathCompletions, completionBody},
			{restapi.PathConnectionDetails, ""}, {restapi.PathEnabled, `{"project_path":"g/p"}`},
		} {
			t.Run(who.name+rt.path, func(t *testing.T) {
				code, _, body := r.call(t, "POST", rt.path, rt.body, "PRIVATE-TOKEN", who.pat)
				if code != 403 || body != `{"message":"403 Forbidden"}`+"\n" {
					t.Fatalf("got %d %q, want 403 Forbidden", code, body)
				}
			})
		}
	}
	if n := r.gw.count(); n != 0 {
		t.Fatalf("the gateway was called %d times for refused callers", n)
	}
}

func TestDirectAccess(t *testing.T) {
	r := newRig(t, rigOptions{})
	code, h, body := r.call(t, "POST", restapi.PathDirectAccess, `{"project_path":"group/project"}`, "PRIVATE-TOKEN", r.e.User,
		"Content-Type", "application/json")
	if code != 201 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %s: %s", code, h.Get("Content-Type"), body)
	}
	m := asJSON(t, body)
	if len(m) != 4 || m["base_url"] != "http://gateway.example:9452" {
		t.Fatalf("members: %v", m)
	}
	c := claims(t, m["token"].(string))
	if got := m["expires_at"].(float64); got != c["exp"].(float64) || int64(got) != testenv.Start.Add(time.Hour).Unix() {
		t.Fatalf("expires_at %v, exp %v", got, c["exp"])
	}
	guid := r.e.GlobalIDs.GlobalUserID(r.e.Users["user"].ID)
	if c["gitlab_global_user_id"] != guid || c["sub"] != r.e.InstanceID {
		t.Fatalf("claims: %v", c)
	}
	if scopes, _ := json.Marshal(c["scopes"]); string(scopes) != `["complete_code","generate_code"]` {
		t.Fatalf("scopes %s: want the code suggestions features only", scopes)
	}
	want := map[string]any{
		"x-gitlab-instance-id": r.e.InstanceID, "x-gitlab-realm": "self-managed", "x-gitlab-global-user-id": guid,
		"x-gitlab-host-name": "gitlab.example", "x-gitlab-version": restapi.InstanceVersion,
		"X-Gitlab-Authentication-Type": "oidc", "X-Gitlab-Model-Prompt-Cache-Enabled": "false",
	}
	got, _ := json.Marshal(m["headers"])
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Fatalf("headers\n got %s\nwant %s", got, wantJSON)
	}
	// The token is recorded: its owner can revoke it.
	if _, err := r.e.Store.GetToken(context.Background(), c["jti"].(string)); err != nil {
		t.Fatalf("minted token not recorded: %v", err)
	}
	if strings.Contains(r.e.Logs.String(), m["token"].(string)) {
		t.Fatal("the token was logged")
	}
}

func TestDirectAccessRefusals(t *testing.T) {
	t.Run("no gateway configured: direct connections are disabled", func(t *testing.T) {
		r := newRig(t, rigOptions{noGateway: true})
		code, _, body := r.call(t, "POST", restapi.PathDirectAccess, "", "PRIVATE-TOKEN", r.e.User)
		if code != 403 || body != `{"message":"403 Forbidden - Direct connections are disabled"}`+"\n" {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("a body that is not JSON is 400", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		code, _, body := r.call(t, "POST", restapi.PathDirectAccess, "{", "PRIVATE-TOKEN", r.e.User)
		if code != 400 || asJSON(t, body)["error"] == nil {
			t.Fatalf("got %d %q", code, body)
		}
	})
}

// Minting through the REST API counts against the per-user mint limit,
// answered as GitLab's rate limiter answers.
func TestRateLimit(t *testing.T) {
	for _, rt := range []struct{ path, body string }{{restapi.PathDirectAccess, ""}, {restapi.PathCompletions, completionBody}} {
		t.Run(rt.path, func(t *testing.T) {
			r := newRig(t, rigOptions{mintRate: 2})
			for i := range 2 {
				if code, _, body := r.call(t, "POST", rt.path, rt.body, "PRIVATE-TOKEN", r.e.User); code >= 300 {
					t.Fatalf("call %d: %d %s", i, code, body)
				}
			}
			code, h, body := r.call(t, "POST", rt.path, rt.body, "PRIVATE-TOKEN", r.e.User)
			if code != 429 || h.Get("Retry-After") != "30" {
				t.Fatalf("got %d Retry-After %q: %s", code, h.Get("Retry-After"), body)
			}
			if want := `{"message":{"error":"This endpoint has been requested too many times. Try again later."}}` + "\n"; body != want {
				t.Fatalf("body %q, want %q", body, want)
			}
			// Another user has their own budget.
			if code, _, body := r.call(t, "POST", restapi.PathDirectAccess, "", "PRIVATE-TOKEN", r.e.Admin); code != 403 {
				t.Fatalf("admin without features: %d %s (want 403, not 429)", code, body)
			}
		})
	}
}

// An address that presents too many invalid PATs is answered 429 with
// Retry-After on every route, its valid PATs included, until its allowance
// refills; missing credentials do not count.
func TestInvalidPATLockout(t *testing.T) {
	r := newRig(t, rigOptions{lockout: 3}) // one more every 20 s
	const bad = pat.Prefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for range 5 {
		if code, _, body := r.call(t, "GET", restapi.PathPATSelf, ""); code != 401 {
			t.Fatalf("no credential: %d %s", code, body)
		}
	}
	for i := range 3 {
		if code, _, body := r.call(t, "GET", restapi.PathPATSelf, "", "PRIVATE-TOKEN", bad); code != 401 {
			t.Fatalf("invalid PAT %d: %d %s", i+1, code, body)
		}
	}
	for _, rt := range []struct{ method, path, h string }{
		{"GET", restapi.PathPATSelf, "PRIVATE-TOKEN"},
		{"POST", restapi.PathDirectAccess, "PRIVATE-TOKEN"},
		{"GET", restapi.PathOAuthTokenInfo, "Authorization"},
	} {
		v := r.e.User
		if rt.h == "Authorization" {
			v = "Bearer " + v
		}
		code, h, body := r.call(t, rt.method, rt.path, "", rt.h, v)
		if code != 429 || h.Get("Retry-After") != "20" {
			t.Fatalf("%s %s with a valid PAT while locked out: %d Retry-After %q: %s", rt.method, rt.path, code, h.Get("Retry-After"), body)
		}
		if want := `{"message":"` + authn.MsgLockedOut + `"}` + "\n"; body != want {
			t.Fatalf("body %q, want %q", body, want)
		}
	}
	r.e.Clock.Add(20 * time.Second)
	if code, _, body := r.call(t, "GET", restapi.PathPATSelf, "", "PRIVATE-TOKEN", r.e.User); code != 200 {
		t.Fatalf("valid PAT after the refill: %d %s", code, body)
	}
}

func TestInstanceRoutes(t *testing.T) {
	r := newRig(t, rigOptions{})
	u := r.e.Users["user"]
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		want                     map[string]any // members that must have these values
	}{
		{"version is at least 17.2, so IDEs connect directly", "GET", restapi.PathVersion, "", 200,
			map[string]any{"version": restapi.InstanceVersion, "enterprise": true}},
		{"user is the PAT's owner", "GET", restapi.PathUser, "", 200,
			map[string]any{"id": float64(u.ID), "username": "user", "state": "active", "is_admin": false}},
		{"the PAT is active with the api scope the Language Server checks", "GET", restapi.PathPATSelf, "", 200,
			map[string]any{"active": true, "revoked": false, "scopes": []any{"api"}, "user_id": float64(u.ID)}},
		{"connection details name the instance and the user", "POST", restapi.PathConnectionDetails, "", 201,
			map[string]any{"instance_id": r.e.InstanceID, "instance_version": restapi.InstanceVersion, "realm": "self-managed",
				"global_user_id": r.e.GlobalIDs.GlobalUserID(u.ID), "host_name": "gitlab.example", "saas_duo_pro_namespace_ids": []any{}}},
		{"an unknown API path is GitLab's 404", "GET", "/api/v4/projects", "", 404, map[string]any{"error": "404 Not Found"}},
		{"enabled without project_path is 400", "POST", restapi.PathEnabled, `{}`, 400, map[string]any{"error": "project_path is missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := r.call(t, tc.method, tc.path, tc.body, "PRIVATE-TOKEN", r.e.User)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tc.wantCode, body)
			}
			m := asJSON(t, body)
			for k, v := range tc.want {
				got, _ := json.Marshal(m[k])
				want, _ := json.Marshal(v)
				if string(got) != string(want) {
					t.Errorf("%s = %s, want %s", k, got, want)
				}
			}
		})
	}
	t.Run("enabled is 200 for an entitled user", func(t *testing.T) {
		if code, _, body := r.call(t, "POST", restapi.PathEnabled, `{"project_path":"g/p"}`, "PRIVATE-TOKEN", r.e.User); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	})
}

func TestCompletionsValidation(t *testing.T) {
	r := newRig(t, rigOptions{})
	long := func(n int) string { return strings.Repeat("é", n) } // characters, not bytes
	tests := []struct {
		name, body string
		wantCode   int
		wantError  string
	}{
		{"no current_file", `{"intent":"completion"}`, 400, "current_file is missing"},
		{"no file_name", `{"current_file":{"content_above_cursor":""}}`, 400, "current_file[file_name] is missing"},
		{"no content_above_cursor", `{"current_file":{"file_name":"a"}}`, 400, "current_file[content_above_cursor] is missing"},
		{"file_name over 255 characters", `{"current_file":{"file_name":"` + long(256) + `","content_above_cursor":""}}`, 400,
			"current_file[file_name] is too long (maximum is 255 characters)"},
		{"unknown intent", `{"current_file":{"file_name":"a","content_above_cursor":""},"intent":"chat"}`, 400, "intent does not have a valid value"},
		{"unknown generation_type", `{"current_file":{"file_name":"a","content_above_cursor":""},"generation_type":"x"}`, 400,
			"generation_type does not have a valid value"},
		{"context item over 100,000 characters", `{"current_file":{"file_name":"a","content_above_cursor":""},"context":[{"type":"file","name":"b","content":"` + long(100_001) + `"}]}`,
			400, "context[0][content] is too long (maximum is 100000 characters)"},
		{"more than 100 context items", `{"current_file":{"file_name":"a","content_above_cursor":""},"context":[` + strings.Repeat(`{},`, 100) + `{}]}`,
			400, "context has too many items (maximum is 100)"},
		{"not JSON", `{"current_file":`, 400, "the request body is not a JSON object of the documented parameters"},
		{"a body over 600,000 bytes", `{"current_file":{"file_name":"a","content_above_cursor":"` + strings.Repeat("a", 600_001) + `"}}`, 413, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := r.call(t, "POST", restapi.PathCompletions, tc.body, "PRIVATE-TOKEN", r.e.User)
			if code != tc.wantCode {
				t.Fatalf("status %d, want %d: %.200s", code, tc.wantCode, body)
			}
			if tc.wantCode == 413 {
				if body != `{"message":"413 Request Entity Too Large"}`+"\n" {
					t.Fatalf("body %q", body)
				}
				return
			}
			if got := asJSON(t, body)["error"]; got != tc.wantError {
				t.Fatalf("error %q, want %q", got, tc.wantError)
			}
		})
	}
	if n := r.gw.count(); n != 0 {
		t.Fatalf("invalid requests reached the gateway %d times", n)
	}
}

// The indirect path forwards to the AI gateway dialect route of the
// intent, with the headers GitLab adds and the client's members minus
// any model choice.
func TestCompletionsForward(t *testing.T) {
	r := newRig(t, rigOptions{})
	guid := r.e.GlobalIDs.GlobalUserID(r.e.Users["user"].ID)
	tests := []struct {
		name, body string
		sse        string
		wantPath   string
		wantScope  string
		check      func(t *testing.T, body map[string]any)
	}{
		{"completion goes to /v2/code/completions", completionBody, "", restapi.GatewayCompletions, "complete_code",
			func(t *testing.T, b map[string]any) {
				if b["prompt_version"] != float64(1) {
					t.Errorf("prompt_version %v", b["prompt_version"])
				}
			}},
		{"generation goes to /v2/code/generations with the instruction as prompt",
			`{"current_file":{"file_name":"a.py","content_above_cursor":"# sort a list\n"},"intent":"generation","user_instruction":"sort it","stream":true}`,
			"", restapi.GatewayGenerations, "generate_code",
			func(t *testing.T, b map[string]any) {
				if b["prompt"] != "sort it" || b["prompt_id"] != "code_suggestions/generations" || b["prompt_version"] != float64(2) || b["stream"] != true {
					t.Errorf("body %v", b)
				}
			}},
		{"generation with X-Supports-Sse-Streaming goes to /v4/code/suggestions",
			`{"current_file":{"file_name":"a.py","content_above_cursor":"x","content_below_cursor":"y","language_identifier":"python"},"intent":"generation","user_instruction":"do","stream":true}`,
			"true", restapi.GatewaySuggestions, "generate_code",
			func(t *testing.T, b map[string]any) {
				pc, _ := json.Marshal(b["prompt_components"])
				want := `[{"payload":{"content_above_cursor":"x","content_below_cursor":"y","file_name":"a.py","language_identifier":"python","prompt_enhancer":{"user_instruction":"do"},"prompt_id":"code_suggestions/generations","prompt_version":"^1.0.0","stream":true},"type":"code_editor_generation"}]`
				if string(pc) != want {
					t.Errorf("prompt_components\n got %s\nwant %s", pc, want)
				}
			}},
		{"SSE support does not change a completion's route", completionBody, "1", restapi.GatewayCompletions, "complete_code", nil},
		{"no intent but an instruction is a generation",
			`{"current_file":{"file_name":"a","content_above_cursor":""},"user_instruction":"write"}`, "", restapi.GatewayGenerations, "generate_code", nil},
		{"model choices and the private token are not forwarded; other members are",
			`{"current_file":{"file_name":"a","content_above_cursor":""},"private_token":"secret","model_endpoint":"http://169.254.169.254/","model_api_key":"k","model_metadata":{"endpoint":"http://x"},"telemetry":[{"lang":"go"}],"project_id":-1}`,
			"", restapi.GatewayCompletions, "complete_code",
			func(t *testing.T, b map[string]any) {
				for _, k := range []string{"private_token", "model_endpoint", "model_api_key", "model_metadata"} {
					if _, ok := b[k]; ok {
						t.Errorf("%s was forwarded", k)
					}
				}
				if b["project_id"] != float64(-1) || b["telemetry"] == nil {
					t.Errorf("passthrough members lost: %v", b)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := r.call(t, "POST", restapi.PathCompletions, tc.body, "Authorization", "Bearer "+r.e.User,
				"X-Supports-Sse-Streaming", tc.sse, "User-Agent", "code-completions-language-server-experiment (gitlab.vim: 1.0)",
				"X-Gitlab-Language-Server-Version", "7.9.0", "X-Request-Id", "req-123")
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			s := r.gw.last(t)
			if s.path != tc.wantPath {
				t.Fatalf("forwarded to %s, want %s", s.path, tc.wantPath)
			}
			jwt, ok := strings.CutPrefix(s.header.Get("Authorization"), "Bearer ")
			if !ok {
				t.Fatalf("no bearer token forwarded")
			}
			c := claims(t, jwt)
			if scopes, _ := json.Marshal(c["scopes"]); string(scopes) != `["`+tc.wantScope+`"]` {
				t.Errorf("scopes %s, want only %s", scopes, tc.wantScope)
			}
			for k, v := range map[string]string{
				"X-Gitlab-Authentication-Type": "oidc", "X-Gitlab-Instance-Id": r.e.InstanceID, "X-Gitlab-Realm": "self-managed",
				"X-Gitlab-Global-User-Id": guid, "X-Gitlab-Host-Name": "gitlab.example", "X-Gitlab-Version": restapi.InstanceVersion,
				"Content-Type": "application/json", "X-Request-Id": "req-123", "X-Gitlab-Language-Server-Version": "7.9.0",
				"User-Agent": "code-completions-language-server-experiment (gitlab.vim: 1.0)",
			} {
				if got := s.header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if s.header.Get("Private-Token") != "" || strings.Contains(strings.Join(s.header.Values("Authorization"), ""), r.e.User) {
				t.Error("the PAT was forwarded to the gateway")
			}
			if tc.check != nil {
				tc.check(t, s.body)
			}
		})
	}
}

// The cursor context is trimmed to the 100,000 characters nearest the
// cursor, as GitLab trims it, so the gateway's bound always holds.
func TestCompletionsTrimCursorContext(t *testing.T) {
	r := newRig(t, rigOptions{})
	above := "A" + strings.Repeat("é", 100_000)
	below := strings.Repeat("ü", 100_000) + "Z"
	b, _ := json.Marshal(map[string]any{"current_file": map[string]string{"file_name": "a", "content_above_cursor": above, "content_below_cursor": below}})
	if code, _, body := r.call(t, "POST", restapi.PathCompletions, string(b), "PRIVATE-TOKEN", r.e.User); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	cf := r.gw.last(t).body["current_file"].(map[string]any)
	if got := cf["content_above_cursor"].(string); got != strings.Repeat("é", 100_000) {
		t.Errorf("above: %d bytes, starts %q", len(got), got[:4])
	}
	if got := cf["content_below_cursor"].(string); got != strings.Repeat("ü", 100_000) {
		t.Errorf("below: %d bytes", len(got))
	}
	if cf["file_name"] != "a" {
		t.Errorf("file_name lost: %v", cf)
	}
}

// The gateway's answer comes back unchanged: status, content type,
// streaming format, Retry-After, body.
func TestCompletionsRelayAnswer(t *testing.T) {
	r := newRig(t, rigOptions{})
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		wantHeader map[string]string
	}{
		{"SSE stream", 200, map[string]string{"Content-Type": "text/event-stream", "X-Streaming-Format": "sse"},
			"event: stream_start\ndata: {}\n\nevent: stream_end\ndata: null\n\n",
			map[string]string{"Content-Type": "text/event-stream", "X-Streaming-Format": "sse"}},
		{"raw text stream", 200, map[string]string{"Content-Type": "text/event-stream"}, "def hello():\n    return 1",
			map[string]string{"Content-Type": "text/event-stream", "X-Streaming-Format": ""}},
		{"model rate limit", 429, map[string]string{"Content-Type": "application/json", "Retry-After": "7"},
			`{"detail":"Too many requests. Please try again later."}`, map[string]string{"Retry-After": "7"}},
		{"gateway 401", 401, map[string]string{"Content-Type": "application/json"}, `{"error":"Header mismatch 'X-Gitlab-Realm'"}`, nil},
		{"inference failed", 503, map[string]string{"Content-Type": "application/json", "Set-Cookie": "a=b"}, `{"detail":"Inference failed"}`,
			map[string]string{"Set-Cookie": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r.gw.setHandler(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			code, h, body := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", r.e.User)
			if code != tc.status || body != tc.body {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.status, tc.body)
			}
			for k, v := range tc.wantHeader {
				if h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
}

// Chunks reach the client as the gateway writes them, and a client that
// goes away cancels the forwarded call.
func TestCompletionsStreamsAndCancels(t *testing.T) {
	r := newRig(t, rigOptions{})
	next := make(chan struct{})
	upstreamDone := make(chan struct{})
	r.gw.setHandler(func(w http.ResponseWriter, req *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-req.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second\n")
		w.(http.Flusher).Flush()
		<-req.Context().Done() // never ends by itself: only the client's going away ends it
	})
	// A chunk held back fails the read at this deadline instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", r.srv.URL+restapi.PathCompletions, strings.NewReader(completionBody))
	req.Header.Set("PRIVATE-TOKEN", r.e.User)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first chunk: %q %v", line, err)
	}
	// The second chunk is written only now: the first arrived on its own.
	close(next)
	if line, err := br.ReadString('\n'); err != nil || line != "second\n" {
		t.Fatalf("second chunk: %q %v", line, err)
	}
	cancel()
	select {
	case <-upstreamDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarded call still runs 10 s after the client went away")
	}
}

func TestCompletionsGatewayFailures(t *testing.T) {
	t.Run("gateway unreachable is 502", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		r := newRig(t, rigOptions{gatewayTo: url})
		code, _, body := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", r.e.User)
		if code != 502 || body != `{"message":"502 Bad Gateway"}`+"\n" {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("gateway slower than the forward timeout is 504", func(t *testing.T) {
		r := newRig(t, rigOptions{timeout: 200 * time.Millisecond})
		r.gw.setHandler(func(_ http.ResponseWriter, req *http.Request) { <-req.Context().Done() })
		code, _, body := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", r.e.User)
		if code != 504 || body != `{"message":"504 Gateway Timeout"}`+"\n" {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("no gateway configured is 503", func(t *testing.T) {
		r := newRig(t, rigOptions{noGateway: true})
		code, _, body := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", r.e.User)
		if code != 503 || body != `{"message":"503 Service Unavailable"}`+"\n" {
			t.Fatalf("got %d %q", code, body)
		}
	})
	t.Run("a redirect is relayed, not followed", func(t *testing.T) {
		r := newRig(t, rigOptions{})
		r.gw.setHandler(func(w http.ResponseWriter, req *http.Request) {
			http.Redirect(w, req, "http://169.254.169.254/", http.StatusTemporaryRedirect)
		})
		code, h, _ := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", r.e.User)
		if code != 307 || h.Get("Location") != "" || r.gw.count() != 1 {
			t.Fatalf("got %d Location %q after %d calls", code, h.Get("Location"), r.gw.count())
		}
	})
}

func TestParseGatewayURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:9452", true}, {"https://gateway.example/", true},
		{"ftp://x", false}, {"http://", false}, {"https://u:p@x", false}, {"http://x/?a=b", false}, {"127.0.0.1:9452", false},
	} {
		if _, err := restapi.ParseGatewayURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

// failingPATs is a PAT store that cannot be read.
type failingPATs struct{}

func (failingPATs) RetryAfter(string) time.Duration { return 0 }

func (failingPATs) Check(context.Context, string, string) (authn.Identity, error) {
	return authn.Identity{}, errors.Join(authn.ErrStoreUnavailable, errors.New("disk on fire"))
}

// A store that cannot be read fails closed with 503, not 401: the caller's
// credentials may well be good.
func TestStoreUnavailableIs503(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	mint, err := minter.New(minter.Config{Signer: e.Keys, Recorder: e.Store, GlobalIDs: e.GlobalIDs, Issuer: testenv.Issuer,
		InstanceID: e.InstanceID, MaxTTL: time.Hour, Now: e.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	api, err := restapi.New(restapi.Config{PATs: failingPATs{}, Minter: mint, GlobalIDs: e.GlobalIDs, InstanceID: e.InstanceID,
		InstanceURL: testenv.Issuer, Logger: zerolog.New(e.Logs)})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", restapi.PathDirectAccess, nil)
	req.Header.Set("PRIVATE-TOKEN", e.User)
	api.ServeHTTP(rec, req)
	if rec.Code != 503 || rec.Body.String() != `{"message":"503 Service Unavailable"}`+"\n" {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	if !strings.Contains(e.Logs.String(), "disk on fire") || strings.Contains(e.Logs.String(), e.User) {
		t.Fatalf("the store failure must be logged, the PAT never: %s", e.Logs)
	}
}

func TestNewRefusesAnIncompleteConfig(t *testing.T) {
	e := testenv.New(t, testenv.Options{})
	mint, _ := minter.New(minter.Config{Signer: e.Keys, Recorder: e.Store, GlobalIDs: e.GlobalIDs, Issuer: testenv.Issuer,
		InstanceID: e.InstanceID, MaxTTL: time.Hour})
	full := restapi.Config{PATs: failingPATs{}, Minter: mint, GlobalIDs: e.GlobalIDs, InstanceID: e.InstanceID, InstanceURL: testenv.Issuer}
	if _, err := restapi.New(full); err != nil {
		t.Fatalf("complete config refused: %v", err)
	}
	noPATs := full
	noPATs.PATs = nil
	gwURLOnly := full
	gwURLOnly.GatewayURL = "http://127.0.0.1:9452"
	for name, cfg := range map[string]restapi.Config{"no PATs": noPATs, "a gateway URL without a gateway": gwURLOnly} {
		if _, err := restapi.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The Language Server checks a token of 42 characters or more (an Airlock
// PAT is 49) at the OAuth provider's token info, and needs the api scope.
func TestOAuthTokenInfo(t *testing.T) {
	r := newRig(t, rigOptions{})
	if len(r.e.User) < 42 {
		t.Fatalf("PATs are %d characters: the Language Server checks them at personal_access_tokens/self, and this route is moot", len(r.e.User))
	}
	code, _, body := r.call(t, "GET", restapi.PathOAuthTokenInfo, "", "Authorization", "Bearer "+r.e.User)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	m := asJSON(t, body)
	scope, _ := json.Marshal(m["scope"])
	// testenv issues PATs valid ten years from its clock's start.
	if string(scope) != `["api"]` || m["resource_owner_id"] != float64(r.e.Users["user"].ID) || m["expires_in"].(float64) < 3600 {
		t.Fatalf("token info %s", body)
	}
	const invalid = `{"error":"invalid_token","error_description":"The access token is invalid","state":"unauthorized"}` + "\n"
	for name, h := range map[string][]string{
		"no token": nil, "revoked PAT": {"Authorization", "Bearer " + r.revoked}, "expired PAT": {"PRIVATE-TOKEN", r.expired},
	} {
		if code, _, body := r.call(t, "GET", restapi.PathOAuthTokenInfo, "", h...); code != 401 || body != invalid {
			t.Errorf("%s: %d %q", name, code, body)
		}
	}
}

// A user entitled to completions only gets completions through the
// indirect path, and a generation is refused before the gateway is called.
func TestCompletionsMintTheIntentsFeature(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	u, err := r.e.Store.CreateUser(ctx, store.User{Username: "completer", Role: store.RoleUser, Features: []string{"code_completions"},
		CreateTime: testenv.Start}, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, completer, err := pat.Issue(ctx, r.e.Store, u, testenv.Start, testenv.Start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, body := r.call(t, "POST", restapi.PathCompletions, completionBody, "PRIVATE-TOKEN", completer); code != 200 {
		t.Fatalf("completion: %d %s", code, body)
	}
	gen := strings.Replace(completionBody, `"intent":"completion"`, `"intent":"generation"`, 1)
	if code, _, body := r.call(t, "POST", restapi.PathCompletions, gen, "PRIVATE-TOKEN", completer); code != 403 || body != `{"message":"403 Forbidden"}`+"\n" {
		t.Fatalf("generation: %d %q", code, body)
	}
	if n := r.gw.count(); n != 1 {
		t.Fatalf("the gateway was called %d times, want once (the completion)", n)
	}
	// direct_access mints what the user has: completions only.
	_, _, body := r.call(t, "POST", restapi.PathDirectAccess, "", "PRIVATE-TOKEN", completer)
	if scopes, _ := json.Marshal(claims(t, asJSON(t, body)["token"].(string))["scopes"]); string(scopes) != `["complete_code"]` {
		t.Fatalf("direct_access scopes %s", scopes)
	}
}
