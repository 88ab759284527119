package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/airlock-dev/airlock/internal/testkit/stubmodel"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

func weatherParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: "get_weather", Description: openai.String("Current weather of a city"),
			Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{
				"location": map[string]any{"type": "string"}, "unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}}},
				"required": []string{"location"}},
		})}}
}

// Tool calls pass through the OpenAI dialect to an OpenAI-compatible
// model, streamed (accumulated by the SDK) and not, with a second turn
// carrying the tool's result; a feature bound to a provider that cannot
// take tools refuses them with a 400 naming `tools`.
func TestOpenAISDKToolCalls(t *testing.T) {
	c := newCluster(t, "--max-prompt-bytes", "8192")
	ctx := context.Background()
	sdk := c.openAIClient(c.mint(nil, 0).AccessToken)

	var first openai.ChatCompletionMessage
	t.Run("streamed tool call, accumulated by the SDK", func(t *testing.T) {
		params := weatherParams("duo_chat")
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		stream := sdk.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		chunks, finished := 0, 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
			if tc, ok := acc.JustFinishedToolCall(); ok {
				finished++
				if tc.Name != "get_weather" || tc.Arguments != stubmodel.ToolArguments {
					t.Errorf("finished tool call %+v", tc)
				}
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || len(acc.Choices[0].Message.ToolCalls) != 1 {
			t.Fatalf("%d chunks accumulated to %s", chunks, acc.RawJSON())
		}
		tc := acc.Choices[0].Message.ToolCalls[0]
		if tc.ID != stubmodel.ToolCallID || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != stubmodel.ToolArguments ||
			acc.Choices[0].Message.Content != "" || finished != 1 || chunks < 5 || acc.Usage.CompletionTokens == 0 {
			t.Fatalf("tool call %+v, content %q, %d finished, %d chunks", tc, acc.Choices[0].Message.Content, finished, chunks)
		}
		var args struct{ Location, Unit string }
		if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || args.Location != "Paris, France" {
			t.Fatalf("arguments %q: %v", tc.Function.Arguments, err)
		}
		first = acc.Choices[0].Message
	})

	t.Run("non-streamed tool call", func(t *testing.T) {
		resp, err := sdk.Chat.Completions.New(ctx, weatherParams("duo_chat"))
		if err != nil {
			t.Fatal(err)
		}
		m := resp.Choices[0].Message
		if resp.Choices[0].FinishReason != "tool_calls" || len(m.ToolCalls) != 1 || m.ToolCalls[0].ID != stubmodel.ToolCallID ||
			m.ToolCalls[0].Function.Name != "get_weather" || m.ToolCalls[0].Function.Arguments != stubmodel.ToolArguments ||
			!strings.Contains(resp.RawJSON(), `"content":null`) {
			t.Fatalf("response %s", resp.RawJSON())
		}
	})

	t.Run("second turn with the tool's result", func(t *testing.T) {
		if len(first.ToolCalls) == 0 {
			t.Skip("no tool call from the first turn")
		}
		// A recording model, so the test sees what the gateway sent on.
		rec := newRecorder(t)
		admin := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
		if _, err := admin.CreateModel(c.asUser(ctx, "admin"), &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
			Name: "tool-recorder", Family: "gpt", Provider: "openai_compatible", Endpoint: rec.URL + "/v1",
			Identifier: "gpt-tools", TrustedNetworks: []string{"127.0.0.1/32"}}}); err != nil {
			t.Fatal(err)
		}
		c.bind("code_generations", "tool-recorder")
		params := weatherParams("code_generations")
		params.Messages = append(params.Messages, first.ToParam(), openai.ToolMessage(`{"temperature_c":22}`, first.ToolCalls[0].ID))
		params.ParallelToolCalls = openai.Bool(false)
		var resp *openai.ChatCompletion
		eventually(t, func() error {
			var err error
			if resp, err = sdk.Chat.Completions.New(ctx, params); err != nil {
				return err
			}
			if rec.last().body == "" {
				return errors.New("not routed to the recorder yet")
			}
			return nil
		})
		if resp.Choices[0].FinishReason != "stop" || resp.Choices[0].Message.Content != stubAnswer || len(resp.Choices[0].Message.ToolCalls) != 0 {
			t.Fatalf("answer after the tool result: %s", resp.RawJSON())
		}
		var sent struct {
			Messages []struct {
				Role       string `json:"role"`
				Content    string `json:"content"`
				ToolCallID string `json:"tool_call_id"`
				ToolCalls  []struct {
					ID       string `json:"id"`
					Type     string `json:"type"`
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			} `json:"messages"`
			Tools []struct {
				Type     string `json:"type"`
				Function struct {
					Name       string          `json:"name"`
					Parameters json.RawMessage `json:"parameters"`
				} `json:"function"`
			} `json:"tools"`
			ParallelToolCalls *bool `json:"parallel_tool_calls"`
		}
		body := rec.last().body
		if err := json.Unmarshal([]byte(body), &sent); err != nil {
			t.Fatal(err)
		}
		m := sent.Messages
		if len(m) != 3 || m[1].Role != "assistant" || len(m[1].ToolCalls) != 1 || m[1].ToolCalls[0].ID != stubmodel.ToolCallID ||
			m[1].ToolCalls[0].Type != "function" || m[1].ToolCalls[0].Function.Name != "get_weather" || m[1].ToolCalls[0].Function.Arguments != stubmodel.ToolArguments ||
			m[2].Role != "tool" || m[2].ToolCallID != stubmodel.ToolCallID || m[2].Content != `{"temperature_c":22}` ||
			len(sent.Tools) != 1 || sent.Tools[0].Type != "function" || sent.Tools[0].Function.Name != "get_weather" ||
			!strings.Contains(string(sent.Tools[0].Function.Parameters), `"required":["location"]`) ||
			sent.ParallelToolCalls == nil || *sent.ParallelToolCalls {
			t.Fatalf("the model server got %s", body)
		}
	})

	t.Run("400 naming tools for a provider that cannot take them", func(t *testing.T) {
		admin := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
		if _, err := admin.CreateModel(c.asUser(ctx, "admin"), &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
			Name: "native-ollama", Family: "llama3", Provider: "ollama", Endpoint: "http://" + c.StubAddr,
			Identifier: "llama3", TrustedNetworks: []string{"127.0.0.1/32"}}}); err != nil {
			t.Fatal(err)
		}
		c.bind("code_completions", "native-ollama")
		var e *openai.Error
		eventually(t, func() error {
			_, err := sdk.Chat.Completions.New(ctx, weatherParams("code_completions"))
			if err == nil {
				return errors.New("tools still accepted: not routed to the ollama model yet")
			}
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v is not an *openai.Error", err, err)
			}
			return nil
		})
		if e.StatusCode != 400 || e.Type != "invalid_request_error" || e.Param != "tools" || !strings.Contains(e.Message, "provider ollama") {
			t.Fatalf("error %d %q param %q: %s", e.StatusCode, e.Type, e.Param, e.Message)
		}
	})
}
