package azure_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/azure"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Config{
		Provider:   azure.Provider,
		New:        azure.New,
		Model:      adapter.Model{Provider: azure.Provider, Family: "gpt", Identifier: "gpt-4o-prod", APIVersion: "2024-10-21"},
		Providers:  []string{"azure_openai"},
		PathSuffix: "/chat/completions",
		AuthHeader: "Api-Key",
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
