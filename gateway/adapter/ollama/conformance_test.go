package ollama_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/ollama"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Config{
		Provider:   ollama.Provider,
		New:        ollama.New,
		Model:      adapter.Model{Provider: ollama.Provider, Family: "llama3", Identifier: "llama3.2:3b"},
		Providers:  []string{"ollama_native"},
		PathSuffix: "/api/chat",
		AuthHeader: "Authorization",
		AuthPrefix: "Bearer ",
	})
}
