package anthropic_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/anthropic"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Config{
		Provider:   anthropic.Provider,
		New:        anthropic.New,
		Model:      adapter.Model{Provider: anthropic.Provider, Family: "claude_3", Identifier: "claude-sonnet-4-5"},
		Providers:  []string{"anthropic"},
		PathSuffix: "/v1/messages",
		AuthHeader: "X-Api-Key",
		Tools:      toolStream(t),
	})
}

// toolStream is the Messages API's streamed tool use as Anthropic documents
// it (https://docs.anthropic.com/en/docs/build-with-claude/streaming,
// "Streaming request with tool use": a text block, then a tool_use block
// whose input arrives as input_json_delta fragments, stop_reason tool_use),
// with a second tool_use block that streams no input (a call without
// parameters: its arguments are "{}").
func toolStream(t *testing.T) *adaptertest.ToolStream {
	b, err := os.ReadFile("testdata/anthropic_tool_use_stream.sse")
	if err != nil {
		t.Fatal(err)
	}
	return &adaptertest.ToolStream{Body: b, Calls: []adapter.ToolCall{
		{ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather", Arguments: `{"location": "San Francisco, CA"}`},
		{ID: "toolu_01UxbQ9TqRp5ZtRxXnJ2hWkC", Name: "get_time", Arguments: `{}`},
	}}
}
