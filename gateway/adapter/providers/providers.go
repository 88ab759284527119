// Package providers is the registry of model adapters: provider name →
// constructor. It is a plain map built on each call, so callers may extend
// or trim their copy without global state.
package providers

import (
	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/anthropic"
	"github.com/airlock-dev/airlock/gateway/adapter/azure"
	"github.com/airlock-dev/airlock/gateway/adapter/ollama"
	"github.com/airlock-dev/airlock/gateway/adapter/openai"
	"github.com/airlock-dev/airlock/gateway/adapter/tgi"
)

// Registry returns a new map from provider name (adapter.Model.Provider) to
// its constructor, with exactly one entry for each of model.Providers (a
// test checks it).
func Registry() map[string]adapter.Constructor {
	return map[string]adapter.Constructor{
		openai.Provider:    openai.New,
		ollama.Provider:    ollama.New,
		anthropic.Provider: anthropic.New,
		azure.Provider:     azure.New,
		tgi.Provider:       tgi.New,
	}
}
