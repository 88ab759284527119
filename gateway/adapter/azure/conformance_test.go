package azure_test

import (
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
		Tools:      adaptertest.OpenAIToolStream(t),
	})
}
