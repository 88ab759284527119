package openai_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/openai"
	"github.com/airlock-dev/airlock/pkg/feature"
)

type seen struct {
	path, auth string
	body       map[string]any
}

// replay answers every request with body as an event stream and reports the
// request it saw.
func replay(t *testing.T, body string) (string, <-chan seen) {
	t.Helper()
	ch := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		ch <- seen{r.URL.Path, r.Header.Get("Authorization"), m}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", ch
}

func stream(t *testing.T, req *adapter.Request) (string, adapter.Result, error) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	a, err := openai.New(adapter.Config{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	res, err := a.Stream(context.Background(), req, func(d adapter.Delta) error { b.WriteString(d.Text); return nil })
	return b.String(), res, err
}

func TestCodeCompletionWithFIMFamilyUsesTextCompletions(t *testing.T) {
	url, got := replay(t, "data: {\"choices\":[{\"index\":0,\"text\":\"return a + b\",\"finish_reason\":null}]}\n\n"+
		"data: {\"choices\":[{\"index\":0,\"text\":\"\\n\",\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n"+
		"data: [DONE]\n\n")
	req := &adapter.Request{
		Feature: feature.CodeCompletions,
		Model:   adapter.Model{Endpoint: url, Identifier: "codestral-22b", Family: "codestral"},
		Code:    &adapter.CodeContext{Above: "def add(a, b):\n    ", Below: "\n"},
		Stop:    []string{"\n\n"},
	}
	text, res, err := stream(t, req)
	if err != nil {
		t.Fatal(err)
	}
	s := <-got
	if s.path != "/v1/completions" {
		t.Errorf("path = %s, want /v1/completions", s.path)
	}
	if p := s.body["prompt"]; p != "[SUFFIX]\n[PREFIX]def add(a, b):\n    " {
		t.Errorf("prompt = %q, want the codestral FIM prompt", p)
	}
	if _, ok := s.body["messages"]; ok {
		t.Error("text completion request carries chat messages")
	}
	if so, _ := s.body["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options = %v, want include_usage true", s.body["stream_options"])
	}
	if text != "return a + b\n" || res.Finish != adapter.FinishStop || res.Usage == nil || *res.Usage != (adapter.Usage{PromptTokens: 9, CompletionTokens: 4}) {
		t.Errorf("got %q %+v usage %+v", text, res, res.Usage)
	}
}

func TestCodeCompletionWithoutFIMFamilyUsesChat(t *testing.T) {
	url, got := replay(t, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	req := &adapter.Request{
		Feature: feature.CodeCompletions,
		Model:   adapter.Model{Endpoint: url, Identifier: "m", Family: "mistral"},
		Code:    &adapter.CodeContext{Above: "a", Below: "b"},
	}
	if _, _, err := stream(t, req); err != nil {
		t.Fatal(err)
	}
	s := <-got
	msgs, _ := s.body["messages"].([]any)
	if s.path != "/v1/chat/completions" || len(msgs) != 2 {
		t.Fatalf("path %s with %d messages, want chat with system + code", s.path, len(msgs))
	}
}

func TestNoKeyMeansNoAuthorizationHeader(t *testing.T) {
	url, got := replay(t, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	_, _, err := stream(t, &adapter.Request{Feature: feature.DuoChat, Model: adapter.Model{Endpoint: url, Identifier: "m"},
		Messages: []adapter.Message{{Role: "user", Content: "hi"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := <-got; s.auth != "" {
		t.Fatalf("Authorization = %q with no key configured", s.auth)
	}
}

func TestStreamSemantics(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantText   string
		wantFinish adapter.Finish
		wantKind   adapter.Kind // 0: success
	}{
		{"mistral content parts: only text counts",
			`data: {"choices":[{"index":0,"delta":{"content":[{"type":"thinking","thinking":[{"type":"text","text":"hmm"}]},{"type":"text","text":"Bon"},{"type":"text","text":"jour"}]},"finish_reason":null}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{"content":""},"finish_reason":"model_length"}]}` + "\n\ndata: [DONE]\n\n",
			"Bonjour", adapter.FinishLength, 0},
		{"reasoning and tool deltas add no text",
			`data: {"choices":[{"index":0,"delta":{"reasoning_content":"think","tool_calls":[{"index":0}]},"finish_reason":"tool_calls"}]}` + "\n\ndata: [DONE]\n\n",
			"", adapter.FinishToolCalls, 0},
		{"finish is sticky across later null finishes",
			`data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"content_filter"}]}` + "\n\n" +
				`data: {"choices":[{"index":0,"delta":{},"finish_reason":null}]}` + "\n\ndata: [DONE]\n\n",
			"a", adapter.FinishContentFilter, 0},
		{"only choice 0 counts",
			`data: {"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"content":"mine"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n",
			"mine", adapter.FinishStop, 0},
		{"escaped text decodes",
			`data: {"choices":[{"index":0,"delta":{"content":"\u003cb\u003e \"q\" \\"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n",
			`<b> "q" \`, adapter.FinishStop, 0},
		{"whitespace-only data is a keep-alive", "data:  \n\n" +
			`data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n",
			"a", adapter.FinishStop, 0},
		{"vllm abort is an error",
			`data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"abort"}]}` + "\n\ndata: [DONE]\n\n",
			"a", "", adapter.KindStreamError},
		{"event: error frame is an error even if [DONE] follows",
			"event: error\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n",
			"", "", adapter.KindStreamError},
		{"llama.cpp error line",
			`data: {"choices":[{"index":0,"delta":{"content":"a"}}]}` + "\n\nerror: {\"code\":500,\"message\":\"slot unavailable\",\"type\":\"server_error\"}\n\n",
			"a", "", adapter.KindStreamError},
		{"invalid JSON chunk is malformed", "data: {\"choices\":[\n\n", "", "", adapter.KindMalformed},
		{"[DONE] unterminated is truncation", `data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n",
			"a", "", adapter.KindMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := replay(t, tt.body)
			text, res, err := stream(t, &adapter.Request{Feature: feature.DuoChat, Model: adapter.Model{Endpoint: url, Identifier: "m"}})
			if text != tt.wantText {
				t.Errorf("text = %q, want %q", text, tt.wantText)
			}
			if tt.wantKind == 0 {
				if err != nil || res.Finish != tt.wantFinish {
					t.Fatalf("got %+v, %v; want finish %q", res, err, tt.wantFinish)
				}
				return
			}
			if e, ok := adapter.AsError(err); !ok || e.Kind != tt.wantKind {
				t.Fatalf("err = %v, want kind %d", err, tt.wantKind)
			}
		})
	}
}
