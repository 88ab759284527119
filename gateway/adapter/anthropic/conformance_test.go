package anthropic_test

import (
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
	})
}
