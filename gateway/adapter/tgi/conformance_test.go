package tgi_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/tgi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Config{
		Provider:      tgi.Provider,
		New:           tgi.New,
		Model:         adapter.Model{Provider: tgi.Provider, Family: "llama3", Identifier: "meta-llama/Meta-Llama-3.1-8B-Instruct"},
		Providers:     []string{"tgi"},
		PathSuffix:    "/generate_stream",
		AuthHeader:    "Authorization",
		AuthPrefix:    "Bearer ",
		NoModelInBody: true,
	})
}
