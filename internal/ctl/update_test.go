package ctl

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/airlock-dev/airlock/issuer/api/authn"
	"github.com/airlock-dev/airlock/issuer/api/modelsvc"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// TestModelUpdateAgainstTheRealService runs `model update` against the
// issuer's ModelService on a real store: each run changes exactly the
// fields whose flags it gives.
func TestModelUpdateAgainstTheRealService(t *testing.T) {
	ctx := context.Background()
	st, err := boltstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	k, err := kek.New(bytes.Repeat([]byte{7}, kek.Size))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := modelsvc.New(ctx, modelsvc.Config{Store: st, KEK: k, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	// Every caller is an administrator: authentication is not under test.
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(authn.WithIdentity(ctx, authn.Identity{Username: "admin", Role: store.RoleAdmin}), req)
	}))
	svc.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	env := map[string]string{"AIRLOCK_ISSUER_ADDR": lis.Addr().String(), "AIRLOCK_TOKEN": adminPAT, "AIRLOCK_PLAINTEXT": "true",
		"AIRLOCK_TIMEOUT": "10s", "AIRLOCK_MODEL_API_KEY": modelAPIKey}
	run := func(args ...string) {
		t.Helper()
		if r := runCtl(t, "", env, args...); r.code != 0 {
			t.Fatalf("airlockctl %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	common := []string{"--family", "mistral", "--provider", "openai_compatible", "--endpoint", "http://10.1.2.3:8000/v1",
		"--identifier", "m7b", "--trusted-network", "10.0.0.0/8"}
	run(append([]string{"model", "create", "--name", "main"}, common...)...)
	delete(env, "AIRLOCK_MODEL_API_KEY")
	run(append([]string{"model", "create", "--name", "spare"}, common...)...)

	get := func() *issuerv1.Model {
		t.Helper()
		m, err := st.GetModel(ctx, "main")
		if err != nil {
			t.Fatal(err)
		}
		return &issuerv1.Model{Family: m.Family, Identifier: m.Identifier, FallbackModel: m.Fallback, HasApiKey: len(m.SealedAPIKey) > 0,
			TrustedNetworks: m.TrustedNetworks, Endpoint: m.Endpoint}
	}
	steps := []struct {
		name  string
		args  []string
		check func(m *issuerv1.Model) bool
	}{
		{"--fallback alone sets the fallback and keeps the rest", []string{"--fallback", "spare"},
			func(m *issuerv1.Model) bool {
				return m.FallbackModel == "spare" && m.Family == "mistral" && m.Identifier == "m7b" && m.HasApiKey && len(m.TrustedNetworks) == 1
			}},
		{"another flag keeps the fallback", []string{"--identifier", "m8b"},
			func(m *issuerv1.Model) bool {
				return m.FallbackModel == "spare" && m.Identifier == "m8b" && m.HasApiKey
			}},
		{"an empty --fallback removes it", []string{"--fallback", ""},
			func(m *issuerv1.Model) bool { return m.FallbackModel == "" && m.Identifier == "m8b" && m.HasApiKey }},
		{"--clear-api-key alone removes only the key", []string{"--clear-api-key"},
			func(m *issuerv1.Model) bool {
				return !m.HasApiKey && m.Identifier == "m8b" && m.Endpoint == "http://10.1.2.3:8000/v1"
			}},
	}
	for _, s := range steps {
		run(append([]string{"model", "update", "--name", "main"}, s.args...)...)
		if m := get(); !s.check(m) {
			t.Fatalf("%s: stored model is now %v", s.name, m)
		}
	}
}
