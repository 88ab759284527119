package catalog

import (
	"errors"
	"reflect"
	"testing"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func model(name, fallback string) *issuerv1.Model {
	return &issuerv1.Model{Name: name, Provider: "openai_compatible", Endpoint: "http://127.0.0.1/v1", ApiKey: "k-" + name, FallbackModel: fallback, TrustedNetworks: []string{"127.0.0.1/32"}}
}

func TestRoute(t *testing.T) {
	c := New(nil, Options{})
	if _, err := c.Route(feature.DuoChat); !errors.Is(err, ErrNotReady) {
		t.Fatalf("before any config: err = %v, want ErrNotReady", err)
	}
	c.Apply(&issuerv1.WatchModelsResponse{
		Revision: 7,
		Models:   []*issuerv1.Model{model("a", "b"), model("b", "a"), model("c", "missing"), model("d", "")},
		Settings: []*issuerv1.FeatureSetting{
			{Feature: "duo_chat", Model: "a"},
			{Feature: "code_completions", Disabled: true},
			{Feature: "code_generations", Model: "c"},
		},
	})
	tests := []struct {
		name    string
		f       feature.Feature
		want    []string
		wantErr error
	}{
		{"fallback cycle stops at the first repeat", feature.DuoChat, []string{"a", "b"}, nil},
		{"disabled feature", feature.CodeCompletions, nil, ErrDisabled},
		{"dangling fallback is skipped", feature.CodeGenerations, []string{"c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Route(tt.f)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var names []string
			for _, g := range got {
				names = append(names, g.Model.Name)
				if g.Model.APIKey != "k-"+g.Model.Name || len(g.Trusted) != 1 {
					t.Errorf("target %s lost its key or networks: %+v", g.Model.Name, g)
				}
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Fatalf("route = %v, want %v", names, tt.want)
			}
		})
	}
	c.Apply(&issuerv1.WatchModelsResponse{Revision: 8})
	if _, err := c.Route(feature.DuoChat); !errors.Is(err, ErrNoModel) {
		t.Fatalf("after unbinding: err = %v, want ErrNoModel", err)
	}
	if c.Revision() != 8 {
		t.Fatalf("revision = %d", c.Revision())
	}
}
