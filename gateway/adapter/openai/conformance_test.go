package openai_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Config{
		Provider:   "openai_compatible",
		New:        openai.New,
		Model:      adapter.Model{Provider: openai.Provider, Family: "mixtral", Identifier: "custom_openai/Mixtral-8x7B"},
		Endpoint:   func(base string) string { return base + "/v1" },
		Providers:  []string{"openai", "vllm", "llamacpp", "ollama_openai", "mistral", "tgi"},
		PathSuffix: "/chat/completions",
		AuthHeader: "Authorization",
		AuthPrefix: "Bearer ",
		Tools:      toolStream(t),
	})
}

// toolStream is OpenAI's documented streaming tool-call format (the
// fixture and its source are in internal/oaistream/testdata).
func toolStream(t *testing.T) *adaptertest.ToolStream {
	b, err := os.ReadFile("../internal/oaistream/testdata/openai_tool_calls_stream.sse")
	if err != nil {
		t.Fatal(err)
	}
	return &adaptertest.ToolStream{Body: b, Calls: []adapter.ToolCall{
		{ID: "call_DdmO9pD3xa9XTPNJ32zg2hcA", Name: "get_weather", Arguments: `{"location":"Paris, France"}`},
		{ID: "call_Xk2b9QZJp4fR0aT7mN3sLw8v", Name: "get_time", Arguments: `{"tz":"Europe/Paris"}`},
	}}
}
