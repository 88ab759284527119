package openai_test

import (
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
		Tools:      adaptertest.OpenAIToolStream(t),
	})
}
