package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// gitlabCall sends a request to the issuer's REST API (/api/v4) or to the
// gateway, with headers, and returns status, content type and body.
func gitlabCall(t *testing.T, method, url, body string, header map[string]string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestCodeSuggestionsDirectAccess is what the GitLab Language Server does
// against the real binaries: it checks its PAT and the instance version,
// asks the instance for direct-connection details, and calls the gateway
// with the token and headers it got. The gateway's GitLab dialect route
// (/v2/completions) is checked once it is merged; the OpenAI-compatible
// route for code (/v1/completions) proves here that the token and headers
// are accepted as issued.
func TestCodeSuggestionsDirectAccess(t *testing.T) {
	c := newCluster(t)
	pat, err := c.PAT("demo")
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + c.IssuerHTTP + "/api/v4"
	auth := map[string]string{"PRIVATE-TOKEN": pat}

	if code, _, body := gitlabCall(t, "GET", api+"/personal_access_tokens/self", "", map[string]string{"Authorization": "Bearer " + pat}); code != 200 ||
		!strings.Contains(body, `"active":true`) || !strings.Contains(body, `"scopes":["api"]`) {
		t.Fatalf("personal_access_tokens/self: %d %s", code, body)
	}
	if code, _, body := gitlabCall(t, "GET", "http://"+c.IssuerHTTP+"/oauth/token/info", "", map[string]string{"Authorization": "Bearer " + pat}); code != 200 ||
		!strings.Contains(body, `"scope":["api"]`) {
		t.Fatalf("oauth/token/info: %d %s", code, body)
	}
	if code, _, body := gitlabCall(t, "GET", api+"/version", "", auth); code != 200 || !strings.Contains(body, `"version":"18.`) {
		t.Fatalf("version: %d %s", code, body)
	}
	if code, _, body := gitlabCall(t, "POST", api+"/code_suggestions/direct_access", "", map[string]string{"PRIVATE-TOKEN": "airlock_pat_wrong"}); code != 401 ||
		body != `{"message":"401 Unauthorized"}`+"\n" {
		t.Fatalf("direct_access with a wrong PAT: %d %q", code, body)
	}

	code, ctype, body := gitlabCall(t, "POST", api+"/code_suggestions/direct_access", `{"project_path":"group/project"}`, auth)
	if code != 201 || ctype != "application/json" {
		t.Fatalf("direct_access: %d %s %s", code, ctype, body)
	}
	var details struct {
		BaseURL   string            `json:"base_url"`
		Token     string            `json:"token"`
		ExpiresAt int64             `json:"expires_at"`
		Headers   map[string]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(body), &details); err != nil {
		t.Fatal(err)
	}
	if details.BaseURL != "http://"+c.GatewayAPI || details.Token == "" || details.ExpiresAt <= time.Now().Unix() ||
		details.Headers["X-Gitlab-Authentication-Type"] != "oidc" || details.Headers["x-gitlab-global-user-id"] == "" {
		t.Fatalf("direct_access details: base_url %q, expires_at %d, headers %v", details.BaseURL, details.ExpiresAt, details.Headers)
	}

	// The details work at the gateway as they are: every header spread
	// in, plus the bearer token, as the Language Server sends them.
	h := map[string]string{"Authorization": "Bearer " + details.Token, "Content-Type": "application/json"}
	for k, v := range details.Headers {
		h[k] = v
	}
	// The token carries the code scopes only, so the OpenAI dialect's
	// route for code (fill-in-the-middle, /v1/completions) answers it.
	fim := `{"model":"code_completions","prompt":"def hello","suffix":"\n"}`
	code, _, body = gitlabCall(t, "POST", details.BaseURL+"/v1/completions", fim, h)
	if code != 200 || !strings.Contains(body, "Hello") {
		t.Fatalf("gateway with the direct-access token: %d %s", code, body)
	}
	// The headers are checked against the token: a forged user id fails.
	h["x-gitlab-global-user-id"] = "forged"
	if code, _, body = gitlabCall(t, "POST", details.BaseURL+"/v1/completions", fim, h); code != 401 {
		t.Fatalf("gateway with a forged x-gitlab-global-user-id: %d %s", code, body)
	}
}

// TestCodeSuggestionsIndirect: the instance's completions endpoint mints a
// token and forwards to the gateway's AI gateway dialect, relaying the
// answer unchanged (status, content type, body).
func TestCodeSuggestionsIndirect(t *testing.T) {
	c := newCluster(t)
	pat, err := c.PAT("demo")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + c.IssuerHTTP + "/api/v4/code_suggestions/completions"
	body := `{"current_file":{"file_name":"hello.py","content_above_cursor":"def hello_world():\n","content_below_cursor":""},"intent":"completion","stream":false}`
	code, ctype, answer := gitlabCall(t, "POST", url, body, map[string]string{"Authorization": "Bearer " + pat, "Content-Type": "application/json"})
	if code != 200 || ctype != "application/json" || !strings.Contains(answer, `"choices"`) || !strings.Contains(answer, "Hello") {
		t.Fatalf("indirect completion: %d %s %s", code, ctype, answer)
	}
	// Streamed: raw text chunks.
	stream := strings.Replace(body, `"stream":false`, `"stream":true`, 1)
	code, ctype, answer = gitlabCall(t, "POST", url, stream, map[string]string{"PRIVATE-TOKEN": pat})
	if code != 200 || !strings.HasPrefix(ctype, "text/event-stream") || !strings.HasPrefix(answer, "Hello") {
		t.Fatalf("indirect streamed completion: %d %s %q", code, ctype, answer)
	}
}
