package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
)

// openAIClient is the official SDK pointed at the gateway's HTTP API with
// jwt as the API key, as `eval "$(airlockctl token mint --format env)"`
// sets it up. Retries are off so every error surfaces as it was answered.
func (c *testCluster) openAIClient(jwt string) openai.Client {
	c.t.Helper()
	tr := &http.Transport{}
	c.t.Cleanup(tr.CloseIdleConnections)
	return openai.NewClient(option.WithAPIKey(jwt), option.WithBaseURL("http://"+c.GatewayAPI+"/v1"),
		option.WithHTTPClient(&http.Client{Transport: tr}), option.WithMaxRetries(0))
}

func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("Be brief."), openai.UserMessage("Say hello")}}
}

// recorder is an OpenAI-compatible model server (the stub) that records
// each request's path and body, so a test can see what the gateway sent.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct{ path, body string }

func newRecorder(t *testing.T) *recorder {
	stub := stubmodel.New(stubmodel.Config{Tokens: 12})
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{r.URL.Path, string(b)})
		rec.mu.Unlock()
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		stub.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) last() recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == 0 {
		return recorded{}
	}
	return rec.reqs[len(rec.reqs)-1]
}

func TestOpenAISDKAgainstTheGateway(t *testing.T) {
	c := newCluster(t, "--max-prompt-bytes", "4096")
	ctx := context.Background()
	sdk := c.openAIClient(c.mint(nil, 0).AccessToken)

	t.Run("chat, not streamed", func(t *testing.T) {
		resp, err := sdk.Chat.Completions.New(ctx, chatParams("duo_chat"))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != stubAnswer || resp.Choices[0].FinishReason != "stop" ||
			resp.Object != "chat.completion" || resp.Model != "duo_chat" || !strings.HasPrefix(resp.ID, "chatcmpl-") ||
			resp.Usage.CompletionTokens != 12 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+12 {
			t.Fatalf("response = %s", resp.RawJSON())
		}
	})

	t.Run("chat, streamed with usage", func(t *testing.T) {
		params := chatParams("duo_chat")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := sdk.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if chunks < 3 || len(acc.Choices) != 1 || acc.Choices[0].Message.Content != stubAnswer || acc.Choices[0].FinishReason != "stop" || acc.Usage.CompletionTokens != 12 {
			t.Fatalf("%d chunks accumulated to %+v", chunks, acc.ChatCompletion)
		}
	})

	t.Run("a long-running tool on pkg/client's token source", func(t *testing.T) {
		cc, err := grpc.NewClient(c.IssuerGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(client.PATCredentials(c.pat("demo"), client.AllowInsecure())))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		tokens := client.NewTokenSource(issuerv1.NewTokenServiceClient(cc), client.WithFeatures("duo_chat"))
		defer tokens.Close()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		oai := openai.NewClient(option.WithBaseURL("http://"+c.GatewayAPI+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
			option.WithHTTPClient(&http.Client{Transport: client.NewHTTPTransport(tokens, tr, client.AllowInsecure())}))
		resp, err := oai.Chat.Completions.New(ctx, chatParams("duo_chat"))
		if err != nil || resp.Choices[0].Message.Content != stubAnswer {
			t.Fatalf("chat through the token source: %v", err)
		}
	})

	t.Run("models this token may use", func(t *testing.T) {
		chatOnly := c.openAIClient(c.mint([]string{"duo_chat"}, 0).AccessToken)
		page, err := chatOnly.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != "duo_chat" || page.Data[0].Object != "model" {
			t.Fatalf("models = %s", page.RawJSON())
		}
		all, err := sdk.Models.List(ctx)
		if err != nil || len(all.Data) != 3 {
			t.Fatalf("every feature: %v %v", all, err)
		}
	})

	t.Run("fill in the middle through the family's template", func(t *testing.T) {
		rec := newRecorder(t)
		admin := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
		if _, err := admin.CreateModel(c.asUser(ctx, "admin"), &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
			Name: "codestral", Family: "codestral", Provider: "openai_compatible", Endpoint: rec.URL + "/v1",
			Identifier: "codestral-latest", TrustedNetworks: []string{"127.0.0.1/32"}}}); err != nil {
			t.Fatal(err)
		}
		c.bind("code_completions", "codestral")
		params := openai.CompletionNewParams{Model: "code_completions", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("def add(a, b):\n    ")},
			Suffix: openai.String("\n\nprint(add(1, 2))\n"), MaxTokens: openai.Int(12)}
		wantPrompt := "[SUFFIX]\n\nprint(add(1, 2))\n[PREFIX]def add(a, b):\n    "
		var got recorded
		eventually(t, func() error {
			resp, err := sdk.Completions.New(ctx, params)
			if err != nil {
				return err
			}
			got = rec.last()
			if got.path != "/v1/completions" {
				return errors.New("not routed to the codestral model yet")
			}
			if len(resp.Choices) != 1 || resp.Choices[0].Text != stubAnswer || resp.Object != "text_completion" {
				t.Fatalf("completion = %s", resp.RawJSON())
			}
			return nil
		})
		var body struct {
			Prompt string `json:"prompt"`
			Model  string `json:"model"`
		}
		if err := json.Unmarshal([]byte(got.body), &body); err != nil || body.Prompt != wantPrompt || body.Model != "codestral-latest" {
			t.Fatalf("model server got %s %s, want prompt %q", got.path, got.body, wantPrompt)
		}

		stream := sdk.Completions.NewStreaming(ctx, params)
		var text strings.Builder
		finish := ""
		for stream.Next() {
			for _, ch := range stream.Current().Choices {
				text.WriteString(ch.Text)
				if ch.FinishReason != "" {
					finish = string(ch.FinishReason)
				}
			}
		}
		if err := stream.Err(); err != nil || text.String() != stubAnswer || finish == "" {
			t.Fatalf("streamed FIM = %q finish %q, %v", text.String(), finish, err)
		}
	})
}

// Every error class reaches the SDK as *openai.Error with its status code.
func TestOpenAISDKErrors(t *testing.T) {
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: append([]string{"--max-prompt-bytes", "4096"}, faultGatewayArgs...)})
	fm := c.Faults
	ctx := context.Background()
	jwt := c.mint(nil, 0).AccessToken
	sdk := c.openAIClient(jwt)

	apiError := func(err error) *openai.Error {
		var e *openai.Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T %v is not an *openai.Error", err, err)
		}
		return e
	}
	tests := []struct {
		name   string
		client openai.Client
		params openai.ChatCompletionNewParams
		status int
		typ    string
		param  string
	}{
		{"401 forged key", c.openAIClient(jwt[:len(jwt)-6] + "AAAAAA"), chatParams("duo_chat"), 401, "authentication_error", ""},
		{"401 not a JWT", c.openAIClient("sk-not-a-token"), chatParams("duo_chat"), 401, "authentication_error", ""},
		{"403 feature not granted", c.openAIClient(c.mint([]string{"code_completions"}, 0).AccessToken), chatParams("duo_chat"), 403, "permission_error", ""},
		{"404 unknown model", sdk, chatParams("gpt-4o"), 404, "not_found_error", "model"},
		{"400 n > 1", sdk, func() openai.ChatCompletionNewParams { p := chatParams("duo_chat"); p.N = openai.Int(2); return p }(), 400, "invalid_request_error", "n"},
		{"400 tool name", sdk, func() openai.ChatCompletionNewParams {
			p := chatParams("duo_chat")
			p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "look up"})}
			return p
		}(), 400, "invalid_request_error", "tools[0].function.name"},
		{"413 prompt over --max-prompt-bytes", sdk, openai.ChatCompletionNewParams{Model: "duo_chat",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("x", 5000))}}, 413, "invalid_request_error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Chat.Completions.New(ctx, tt.params)
			e := apiError(err)
			if e.StatusCode != tt.status || e.Type != tt.typ || e.Param != tt.param || e.Message == "" {
				t.Fatalf("error %d type %q param %q message %q, want %d %q %q", e.StatusCode, e.Type, e.Param, e.Message, tt.status, tt.typ, tt.param)
			}
		})
	}

	// Model failures: code_generations is bound to one faulty model after
	// another (duo_chat stays on the stub).
	models := []struct {
		fault      faultmodel.Fault
		status     int
		retryAfter string
	}{
		{faultmodel.RateLimited, 429, "2"},
		{faultmodel.EchoKey, 502, ""},
		{faultmodel.Garbage, 500, ""},
		{faultmodel.ServerError, 503, ""},
		{faultmodel.StallHeaders, 504, ""},
	}
	gen := chatParams("code_generations")
	for i, m := range models {
		t.Run(string(m.fault), func(t *testing.T) {
			name := "oai-fault-" + string(rune('a'+i))
			c.createModel(name, fm.URL(m.fault), "sk-model-key")
			c.bind("code_generations", name)
			var e *openai.Error
			eventually(t, func() error {
				_, err := sdk.Chat.Completions.New(ctx, gen)
				if err == nil {
					return errors.New("still routed to the stub")
				}
				e = apiError(err)
				if e.StatusCode != m.status {
					return errors.New(e.Error())
				}
				return nil
			})
			wantType := "server_error"
			if m.status == 429 {
				wantType = "rate_limit_error"
			}
			if e.Type != wantType || e.Response.Header.Get("Retry-After") != m.retryAfter {
				t.Fatalf("error %d type %q Retry-After %q: %s", e.StatusCode, e.Type, e.Response.Header.Get("Retry-After"), e.RawJSON())
			}
			if strings.Contains(e.RawJSON(), "sk-model-key") {
				t.Fatalf("the model's API key reached the caller: %s", e.RawJSON())
			}
		})
	}

	t.Run("failure after streaming began", func(t *testing.T) {
		c.createModel("oai-reset", fm.URL(faultmodel.ResetMidStream), "")
		c.bind("code_generations", "oai-reset")
		eventually(t, func() error {
			stream := sdk.Chat.Completions.NewStreaming(ctx, gen)
			var text strings.Builder
			for stream.Next() {
				for _, ch := range stream.Current().Choices {
					text.WriteString(ch.Delta.Content)
				}
			}
			if !strings.HasPrefix(text.String(), faultmodel.Word) {
				return errors.New("still routed to the stub")
			}
			var se *ssestream.StreamError
			if !errors.As(stream.Err(), &se) || !strings.Contains(se.Message, "server_error") {
				t.Fatalf("after %q: stream error %T %v, want an error event", text.String(), stream.Err(), stream.Err())
			}
			return nil
		})
	})
}

// A client that goes away mid-stream closes the upstream call.
func TestOpenAIDisconnectClosesUpstream(t *testing.T) {
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayArgs: []string{"--upstream-idle-timeout", "30s"}})
	fm := c.Faults
	c.createModel("endless", fm.URL(faultmodel.Endless), "")
	sdk := c.openAIClient(c.mint(nil, 0).AccessToken)
	c.bind(faultFeature, "endless")
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithCancel(context.Background())
		stream := sdk.Chat.Completions.NewStreaming(ctx, chatParams(faultFeature))
		// The endless model writes as fast as the gateway reads, so the
		// first chunk may carry many of its words at once.
		if !stream.Next() || len(stream.Current().Choices) == 0 || !strings.HasPrefix(stream.Current().Choices[0].Delta.Content, faultmodel.Word) {
			// Still routed to the stub: the catalog has not seen the binding.
			cancel()
			_ = stream.Close()
			if attempt > 100 {
				t.Fatalf("first chunk %.200s, %v; want the endless model's words", stream.Current().RawJSON(), stream.Err())
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		cancelled := time.Now()
		cancel()
		_ = stream.Close()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		rec, err := fm.WaitRecord(wctx, func(r faultmodel.Record) bool {
			return r.Fault == faultmodel.Endless && r.Start.Before(cancelled) && r.End.After(cancelled)
		})
		if err != nil {
			t.Fatalf("the model server never saw the request end: %v", err)
		}
		if !rec.ClientGone || rec.End.Sub(cancelled) > time.Second {
			t.Fatalf("upstream request ended %v after the client left (client gone: %v)", rec.End.Sub(cancelled), rec.ClientGone)
		}
		t.Logf("upstream request closed %v after the HTTP client went away", rec.End.Sub(cancelled).Round(time.Microsecond))
		return
	}
}

// The exact bytes a curl -N user sees.
func TestOpenAIRawSSEBytes(t *testing.T) {
	c := newCluster(t)
	jwt := c.mint(nil, 0).AccessToken
	body := `{"model":"duo_chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}`
	req, err := http.NewRequest("POST", "http://"+c.GatewayAPI+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "curl-1")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || resp.Header.Get("X-Request-Id") != "curl-1" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(raw), "\n\ndata: [DONE]\n\n") {
		t.Fatalf("stream does not end with a blank line and data: [DONE]:\n%s", raw)
	}
	// Events are "data: <json>" lines each followed by one blank line.
	events := strings.Split(strings.TrimSuffix(string(raw), "\n\n"), "\n\n")
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "data: ") {
			t.Fatalf("line %q is not a data line", l)
		}
	}
	head := `data: {"id":"chatcmpl-curl-1","object":"chat.completion.chunk","created":`
	var text strings.Builder
	n := len(events)
	if n < 4 {
		t.Fatalf("%d events:\n%s", n, raw)
	}
	for i, ev := range events[:n-3] {
		var chunk struct {
			Choices []struct {
				Delta struct {
					Role    string `json:"role"`
					Content string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if !strings.HasPrefix(ev, head) || json.Unmarshal([]byte(strings.TrimPrefix(ev, "data: ")), &chunk) != nil ||
			len(chunk.Choices) != 1 || chunk.Choices[0].FinishReason != nil || (i == 0) != (chunk.Choices[0].Delta.Role == "assistant") {
			t.Fatalf("event %d: %s", i, ev)
		}
		text.WriteString(chunk.Choices[0].Delta.Content)
	}
	if text.String() != stubAnswer {
		t.Fatalf("text %q, want %q", text.String(), stubAnswer)
	}
	final, usage := events[n-3], events[n-2]
	if !strings.HasPrefix(final, head) || !strings.HasSuffix(final, `,"model":"duo_chat","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`) {
		t.Fatalf("final chunk: %s", final)
	}
	if !strings.HasPrefix(usage, head) || !strings.HasSuffix(usage, `,"model":"duo_chat","choices":[],"usage":{"prompt_tokens":8,"completion_tokens":12,"total_tokens":20}}`) {
		t.Fatalf("usage chunk: %s", usage)
	}
}

// httpAPIEvidence calls the HTTP API as a curl user would (good's headers
// for the healthy chat and for the model that echoes its key; each of
// refused's, which must be refused) and returns every whole response for
// TestNoSecretLeaks.
func (c *testCluster) httpAPIEvidence(t *testing.T, good map[string]string, refused map[string]map[string]string) map[string][]byte {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	out := map[string][]byte{}
	call := func(name string, hdr map[string]string, model string, stream bool) int {
		body := fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":"hello"}]}`, model, stream)
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.GatewayAPI+"/v1/chat/completions", strings.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("HTTP API %s: %v", name, err)
		}
		dump, err := httputil.DumpResponse(resp, true)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("HTTP API %s: %v", name, err)
		}
		out["HTTP API: "+name] = dump
		return resp.StatusCode
	}
	if code := call("chat", good, "duo_chat", false); code != http.StatusOK {
		t.Errorf("HTTP API chat: %d", code)
	}
	call("chat streamed", good, "duo_chat", true)
	if code := call("model that echoes its key", good, "code_generations", false); code != http.StatusBadGateway {
		t.Errorf("HTTP API, model rejecting its key: %d, want 502", code)
	}
	for name, md := range refused {
		if code := call("refused "+name, md, "duo_chat", true); code == http.StatusOK {
			t.Errorf("HTTP API accepted the %s token", name)
		}
	}
	return out
}
