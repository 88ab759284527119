package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	"github.com/airlock-dev/airlock/pkg/client"
)

// glAnswer is one answer of the GitLab dialect.
type glAnswer struct {
	status int
	header http.Header
	body   string
}

// glPost sends body to the gateway's GitLab dialect with hdr (metadata
// names or HTTP names; nil sends no credentials).
func glPost(t *testing.T, base, path, body string, hdr map[string]string) glAnswer {
	t.Helper()
	method := "POST"
	if m, p, ok := strings.Cut(path, " "); ok {
		method, path = m, p
	}
	req, err := http.NewRequest(method, "http://"+base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return glAnswer{resp.StatusCode, resp.Header, string(b)}
}

// glHeaders is what a GitLab instance sends with tok.
func glHeaders(tok *client.Token) map[string]string { return cluster.Metadata(tok) }

const glCompletion = `{"prompt_version":1,"project_path":"group/project","project_id":-1,"current_file":{"file_name":"test.rb","content_above_cursor":"def hello_world","content_below_cursor":""},"choices_count":1,"intent":"completion","context":[],"telemetry":[]}`

const glGeneration = `{"prompt_components":[{"type":"code_editor_generation","payload":{"file_name":"main.py","content_above_cursor":"# sum two numbers\n","content_below_cursor":"","language_identifier":"Python","stream":STREAM,"prompt_enhancer":{"user_instruction":"write add(a, b)"},"prompt_id":"code_suggestions/generations","prompt_version":"^1.0.0"}}],"model_metadata":{"provider":"openai","name":"mistral","endpoint":"http://127.0.0.1:1/v1","api_key":"sk-ignored","identifier":"custom_openai/m"}}`

const glChat = `{"messages":[{"role":"user","content":"Say hello","context":null,"current_file":null,"additional_context":[]}],"model_metadata":{"provider":"openai","name":"mistral","endpoint":"http://127.0.0.1:1/v1","api_key":"sk-ignored","identifier":"custom_openai/m"},"unavailable_resources":["Pipelines"]}`

// The GitLab dialect over the real binaries: every route, its shapes, its
// content types and stream framings, and GitLab's error bodies.
func TestGitLabDialect(t *testing.T) {
	c := newCluster(t)
	gw := c.GatewayAPI
	all := glHeaders(c.mint(nil, 0))

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"HEAD /", "GET /monitoring/healthz", "GET /monitoring/ready"} {
			if a := glPost(t, gw, p, "", nil); a.status != 200 {
				t.Errorf("%s: %d %s", p, a.status, a.body)
			}
		}
	})

	t.Run("v2 completions, the health probe's request", func(t *testing.T) {
		for _, path := range []string{"/v2/code/completions", "/v2/completions"} {
			a := glPost(t, gw, path, glCompletion, all)
			var v struct {
				ID          string            `json:"id"`
				Model       map[string]string `json:"model"`
				Experiments []any             `json:"experiments"`
				Object      string            `json:"object"`
				Created     int64             `json:"created"`
				Choices     []struct {
					Text         string `json:"text"`
					Index        int    `json:"index"`
					FinishReason string `json:"finish_reason"`
				} `json:"choices"`
			}
			if a.status != 200 || a.header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(a.body), &v) != nil {
				t.Fatalf("%s: %d %q %s", path, a.status, a.header.Get("Content-Type"), a.body)
			}
			if v.Object != "text_completion" || v.ID == "" || v.Created == 0 || v.Experiments == nil || v.Model["engine"] != "airlock" ||
				v.Model["name"] != cluster.StubModel || v.Model["lang"] != "ruby" || len(v.Choices) != 1 || v.Choices[0].Text != stubAnswer || v.Choices[0].FinishReason == "" {
				t.Fatalf("%s: %s", path, a.body)
			}
		}
	})

	t.Run("v2 completions streamed: raw text, no SSE framing", func(t *testing.T) {
		a := glPost(t, gw, "/v2/completions", strings.Replace(glCompletion, `"prompt_version":1`, `"prompt_version":1,"stream":true`, 1), all)
		if a.status != 200 || a.header.Get("Content-Type") != "text/event-stream; charset=utf-8" || a.body != stubAnswer {
			t.Fatalf("%d %q %q", a.status, a.header.Get("Content-Type"), a.body)
		}
	})

	t.Run("v2 generations", func(t *testing.T) {
		body := strings.Replace(glCompletion, `"prompt_version":1`, `"prompt_version":2,"prompt":"write a greeting","prompt_id":"code_suggestions/generations","model_provider":"litellm","model_endpoint":"http://127.0.0.1:1/v1","model_name":"codestral","model_api_key":"sk-ignored"`, 1)
		a := glPost(t, gw, "/v2/code/generations", body, all)
		if a.status != 200 || !strings.Contains(a.body, `"object":"text_completion"`) || !strings.Contains(a.body, `"text":"`+stubAnswer+`"`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})

	t.Run("v3 completions, whole and streamed", func(t *testing.T) {
		a := glPost(t, gw, "/v3/code/completions", strings.Replace(glGeneration, "STREAM", "false", 1), all)
		var v struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
			Model    map[string]string `json:"model"`
			Metadata struct {
				Model     map[string]string `json:"model"`
				Timestamp int64             `json:"timestamp"`
			} `json:"metadata"`
		}
		if a.status != 200 || json.Unmarshal([]byte(a.body), &v) != nil || len(v.Choices) != 1 || v.Choices[0].Text != stubAnswer ||
			v.Model["lang"] != "python" || v.Metadata.Timestamp == 0 || v.Metadata.Model["name"] != cluster.StubModel {
			t.Fatalf("%d %s", a.status, a.body)
		}
		a = glPost(t, gw, "/v3/code/completions", strings.Replace(glGeneration, "STREAM", "true", 1), all)
		if a.status != 200 || a.header.Get("Content-Type") != "text/event-stream; charset=utf-8" || a.body != stubAnswer {
			t.Fatalf("streamed: %d %q %q", a.status, a.header.Get("Content-Type"), a.body)
		}
	})

	t.Run("v4 suggestions: SSE events", func(t *testing.T) {
		a := glPost(t, gw, "/v4/code/suggestions", strings.Replace(glGeneration, "STREAM", "true", 1), all)
		if a.status != 200 || a.header.Get("X-Streaming-Format") != "sse" || a.header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("%d %v %s", a.status, a.header, a.body)
		}
		events := strings.Split(strings.TrimSuffix(a.body, "\n\n"), "\n\n")
		var text strings.Builder
		for i, ev := range events {
			name, data, _ := strings.Cut(ev, "\n")
			switch {
			case i == 0 && name == "event: stream_start" && strings.HasPrefix(data, `data: {"metadata":{"model":`):
			case i == len(events)-1 && name == "event: stream_end" && data == "data: null":
			case i > 0 && i < len(events)-1 && name == "event: content_chunk":
				var chunk struct {
					Choices []struct {
						Delta struct {
							Content string `json:"content"`
						} `json:"delta"`
					} `json:"choices"`
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &chunk); err != nil || len(chunk.Choices) != 1 {
					t.Fatalf("event %d %q: %v", i, ev, err)
				}
				text.WriteString(chunk.Choices[0].Delta.Content)
			default:
				t.Fatalf("event %d of %d out of place: %q", i, len(events), ev)
			}
		}
		if len(events) < 3 || text.String() != stubAnswer {
			t.Fatalf("%d events, text %q", len(events), text.String())
		}
	})

	t.Run("duo chat: one NDJSON object per line", func(t *testing.T) {
		a := glPost(t, gw, "/v2/chat/agent", glChat, all)
		if a.status != 200 || a.header.Get("Content-Type") != "application/x-ndjson; charset=utf-8" || !strings.HasSuffix(a.body, "\n") {
			t.Fatalf("%d %q %q", a.status, a.header.Get("Content-Type"), a.body)
		}
		var text strings.Builder
		var types []string
		sc := bufio.NewScanner(strings.NewReader(a.body))
		for sc.Scan() {
			var ev struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			}
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			types = append(types, ev.Type)
			if ev.Type == "final_answer_delta" {
				text.WriteString(ev.Data["text"].(string))
			}
		}
		n := len(types)
		if text.String() != stubAnswer || n < 3 || types[n-1] != "usage" || types[n-2] != "final_answer_delta" ||
			!strings.Contains(strings.Split(strings.TrimSuffix(a.body, "\n"), "\n")[n-2], `"finish_reason"`) {
			t.Fatalf("events %v text %q:\n%s", types, text.String(), a.body)
		}
	})

	t.Run("test connection, on the catalog's model when request models are off", func(t *testing.T) {
		a := glPost(t, gw, "/v1/prompts/model_configuration%2Fcheck", `{"inputs":{},"stream":false,"model_metadata":{"provider":"openai","name":"mistral","endpoint":"http://127.0.0.1:1/v1","api_key":"k","identifier":"custom_openai/m"}}`, all)
		if a.status != 200 || !strings.HasPrefix(a.body, `"`) {
			t.Fatalf("%d %s", a.status, a.body)
		}
	})

	t.Run("refusals in GitLab's words", func(t *testing.T) {
		chatOnly := glHeaders(c.mint([]string{"duo_chat"}, 0))
		without := func(h map[string]string, key string) map[string]string {
			cp := map[string]string{}
			for k, v := range h {
				if k != key {
					cp[k] = v
				}
			}
			return cp
		}
		with := func(h map[string]string, key, value string) map[string]string {
			cp := without(h, key)
			cp[key] = value
			return cp
		}
		tests := []struct {
			name, path, body string
			hdr              map[string]string
			status           int
			want             string
		}{
			{"no token", "/v2/code/completions", glCompletion, nil, 401, `{"error":"No authorization header presented"}`},
			{"not oidc", "/v2/code/completions", glCompletion, without(all, "x-gitlab-authentication-type"), 401, `{"error":"Invalid authentication token type - only OIDC is supported"}`},
			{"realm mismatch", "/v2/chat/agent", glChat, with(all, "x-gitlab-realm", "saas"), 401, `{"error":"Header mismatch 'X-Gitlab-Realm'"}`},
			{"instance mismatch", "/v2/code/completions", glCompletion, with(all, "x-gitlab-instance-id", "other"), 401, `{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}`},
			{"forged token", "/v2/code/completions", glCompletion, with(all, "authorization", all["authorization"]+"x"), 401, `{"error":"Forbidden by auth provider"}`},
			{"completions not granted", "/v2/code/completions", glCompletion, chatOnly, 403, `{"detail":"Unauthorized to access code completions"}`},
			{"generations not granted", "/v4/code/suggestions", strings.Replace(glGeneration, "STREAM", "true", 1), chatOnly, 403, `{"detail":"Unauthorized to access code generations"}`},
			{"no current_file", "/v2/code/completions", `{"prompt_version":1}`, all, 422, `{"detail":"current_file: Field required"}`},
			{"content too long", "/v2/code/completions", `{"current_file":{"file_name":"a.rb","content_above_cursor":"` + strings.Repeat("x", 100001) + `"}}`, all, 422,
				`{"detail":"current_file.content_above_cursor: at most 100000 characters"}`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				a := glPost(t, gw, tt.path, tt.body, tt.hdr)
				if a.status != tt.status || strings.TrimSpace(a.body) != tt.want {
					t.Fatalf("got %d %s, want %d %s", a.status, a.body, tt.status, tt.want)
				}
			})
		}
	})
}

// Model failures reach GitLab as the real gateway words them.
func TestGitLabModelFailures(t *testing.T) {
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: faultGatewayArgs})
	fm := c.Faults
	all := glHeaders(c.mint(nil, 0))
	tests := []struct {
		fault      faultmodel.Fault
		status     int
		want       string
		retryAfter string
	}{
		{faultmodel.RateLimited, 429, `{"detail":"Too many requests. Please try again later."}`, "2"},
		{faultmodel.ServerError, 503, `{"detail":"Inference failed"}`, ""},
		{faultmodel.EchoKey, 503, `{"detail":"Inference failed"}`, ""},
	}
	for i, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			name := "gl-fault-" + string(rune('a'+i))
			c.createModel(name, fm.URL(tt.fault), "sk-model-key")
			c.bind("code_completions", name)
			eventually(t, func() error {
				a := glPost(t, c.GatewayAPI, "/v2/code/completions", glCompletion, all)
				// Until the binding arrives, the previous model answers.
				if a.status != tt.status || strings.TrimSpace(a.body) != tt.want || a.header.Get("Retry-After") != tt.retryAfter {
					return fmt.Errorf("got %d %s (Retry-After %q)", a.status, a.body, a.header.Get("Retry-After"))
				}
				return nil
			})
		})
	}
	t.Run("test connection names the model server's status", func(t *testing.T) {
		c.createModel("gl-check", fm.URL(faultmodel.EchoKey), "sk-model-key")
		c.bind("duo_chat", "gl-check")
		eventually(t, func() error {
			a := glPost(t, c.GatewayAPI, "/v1/prompts/model_configuration%2Fcheck", `{"inputs":{},"stream":false}`, all)
			if a.status == 200 {
				return errors.New("still routed to the stub")
			}
			if a.status != 421 || strings.TrimSpace(a.body) != `{"detail":"401: Unauthorized"}` {
				t.Fatalf("got %d %s", a.status, a.body)
			}
			return nil
		})
	})
	t.Run("chat: a model failure is an error event", func(t *testing.T) {
		c.createModel("gl-chat-down", fm.URL(faultmodel.ServerError), "")
		c.bind("duo_chat", "gl-chat-down")
		eventually(t, func() error {
			a := glPost(t, c.GatewayAPI, "/v2/chat/agent", glChat, all)
			if strings.Contains(a.body, "final_answer_delta") {
				return errors.New("still routed to a healthy model")
			}
			if a.status != 200 || !strings.HasPrefix(a.body, `{"type":"error","data":{"message":`) || strings.Count(a.body, "\n") != 1 {
				t.Fatalf("got %d %q", a.status, a.body)
			}
			return nil
		})
	})
}

// Request-supplied models are refused without the opt-in and outside the
// allowlist, and answer when both allow them.
func TestGitLabRequestModels(t *testing.T) {
	c := newCluster(t)
	rec := newRecorder(t)
	all := glHeaders(c.mint(nil, 0))
	named := func(endpoint string) string {
		return strings.Replace(glCompletion, `"prompt_version":1`, `"prompt_version":2,"prompt":null,"model_provider":"litellm","model_endpoint":"`+endpoint+
			`","model_name":"codestral","model_api_key":"sk-request","model_identifier":"custom_openai/Codestral-22B"`, 1)
	}

	a := glPost(t, c.GatewayAPI, "/v2/code/completions", named(rec.URL+"/v1"), all)
	if a.status != 200 || !strings.Contains(a.body, `"name":"`+cluster.StubModel+`"`) || rec.last().path != "" {
		t.Fatalf("without the opt-in: %d %s; the request's endpoint saw %q", a.status, a.body, rec.last().path)
	}

	c.restartGateway("--allow-request-models", "--request-model-networks", "127.0.0.0/8")
	a = glPost(t, c.GatewayAPI, "/v2/code/completions", named(rec.URL+"/v1"), all)
	if a.status != 200 || !strings.Contains(a.body, `"name":"Codestral-22B"`) || rec.last().path != "/v1/completions" ||
		!strings.Contains(rec.last().body, `"prompt":"[SUFFIX][PREFIX]def hello_world"`) {
		t.Fatalf("with the opt-in: %d %s; the model server got %s %s", a.status, a.body, rec.last().path, rec.last().body)
	}
	a = glPost(t, c.GatewayAPI, "/v2/code/completions", named("http://10.9.9.9:8000/v1"), all)
	if a.status != 422 || !strings.Contains(a.body, "outside the networks this gateway may dial") {
		t.Fatalf("outside the allowlist: %d %s", a.status, a.body)
	}
}

// A real GitLab instance's token (its own key, published at its JWKS URL,
// sub = the instance id, no user binding) is accepted with no issuer at
// all when request-supplied models are on.
func TestGitLabWithoutIssuer(t *testing.T) {
	c := newCluster(t)
	rec := newRecorder(t)
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.FromRaw(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, "gitlab-instance-key")
	_ = pub.Set(jwk.AlgorithmKey, jwa.RS256)
	_ = pub.Set(jwk.KeyUsageKey, "sig")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer jwks.Close()

	const instance, issuer = "4f2c9a4e-6d7b-4c1e-9a51-0c7d2b8e1f10", "https://gitlab.example.com"
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": issuer, "aud": "gitlab-ai-gateway", "sub": instance, "gitlab_realm": "self-managed",
		"gitlab_instance_id": instance, "scopes": []string{"complete_code", "generate_code", "duo_chat"},
		"jti": "gitlab-jti-1", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	sk, err := jwk.FromRaw(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = sk.Set(jwk.KeyIDKey, "gitlab-instance-key")
	signed, err := jws.Sign(claims, jws.WithKey(jwa.RS256, sk))
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{"Authorization": "Bearer " + string(signed), "X-Gitlab-Authentication-Type": "oidc",
		"X-Gitlab-Realm": "self-managed", "X-Gitlab-Instance-Id": instance, "X-Gitlab-Global-User-Id": "Wf3Jv0aEzqzVPOu6PqsdNGsjdGXO1ubGlDSZNJeyvO0="}

	c.Issuer.Stop(10 * time.Second)
	c.restartGateway("--issuer-addr", "", "--jwks-url", jwks.URL+"/oauth/discovery/keys", "--expected-issuer", issuer,
		"--allow-request-models", "--request-model-networks", "127.0.0.0/8")

	body := strings.Replace(glCompletion, `"prompt_version":1`, `"prompt_version":2,"model_provider":"litellm","model_endpoint":"`+rec.URL+
		`/v1","model_name":"codestral","model_api_key":"sk-request","model_identifier":"custom_openai/Codestral-22B"`, 1)
	a := glPost(t, c.GatewayAPI, "/v2/code/completions", body, hdr)
	if a.status != 200 || !strings.Contains(a.body, `"text":"`+stubAnswer+`"`) || rec.last().path != "/v1/completions" {
		t.Fatalf("GitLab's token with no issuer: %d %s", a.status, a.body)
	}
	if a := glPost(t, c.GatewayAPI, "GET /monitoring/ready", "", nil); a.status != 200 {
		t.Fatalf("ready without an issuer: %d %s", a.status, a.body)
	}
	// Without a model in the request there is no catalog to fall back on.
	if a := glPost(t, c.GatewayAPI, "/v2/code/completions", glCompletion, hdr); a.status != 503 {
		t.Fatalf("no request model and no catalog: %d %s", a.status, a.body)
	}
	// The headers are checked against the claims as on the gRPC path.
	hdr["X-Gitlab-Instance-Id"] = "another-instance"
	if a := glPost(t, c.GatewayAPI, "/v2/code/completions", body, hdr); a.status != 401 || strings.TrimSpace(a.body) != `{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}` {
		t.Fatalf("instance mismatch: %d %s", a.status, a.body)
	}
}
