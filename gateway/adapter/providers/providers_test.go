package providers_test

import (
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/providers"
	"github.com/airlock-dev/airlock/pkg/model"
)

func TestRegistryHasEveryProviderAndEachConstructs(t *testing.T) {
	reg := providers.Registry()
	for _, name := range model.Providers() {
		ctor, ok := reg[name]
		if !ok {
			t.Errorf("provider %q missing from the registry", name)
			continue
		}
		a, err := ctor(adapter.Config{})
		if err != nil || a == nil {
			t.Errorf("%s: constructor = %v, %v; want an adapter", name, a, err)
		}
	}
	if len(reg) != len(model.Providers()) {
		t.Errorf("registry has %d providers, want the %d of pkg/model: %s", len(reg), len(model.Providers()), model.ProviderList())
	}
}

func TestRegistryReturnsAFreshMap(t *testing.T) {
	a := providers.Registry()
	delete(a, "ollama")
	if _, ok := providers.Registry()["ollama"]; !ok {
		t.Fatal("deleting from one registry copy changed the next")
	}
}
