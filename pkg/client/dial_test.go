package client_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestOptionsFromEnvReadsAirlockctlsVariables(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    client.Options
		wantErr string
	}{
		{name: "nothing set is the zero value", env: nil, want: client.Options{}},
		{name: "every variable", env: map[string]string{
			"AIRLOCK_ISSUER_ADDR": "issuer:9440", "AIRLOCK_GATEWAY_ADDR": "gateway:9450", "AIRLOCK_TOKEN_FILE": "/t",
			"AIRLOCK_CA": "ca.crt", "AIRLOCK_CERT": "c.crt", "AIRLOCK_KEY": "c.key", "AIRLOCK_PLAINTEXT": "false"},
			want: client.Options{IssuerAddr: "issuer:9440", GatewayAddr: "gateway:9450", PATFile: "/t", CAFile: "ca.crt", CertFile: "c.crt", KeyFile: "c.key"}},
		{name: "the token itself when there is no token file", env: map[string]string{"AIRLOCK_TOKEN": " glpat-x\n", "AIRLOCK_PLAINTEXT": "true"},
			want: client.Options{PAT: "glpat-x", Plaintext: true}},
		{name: "the token file wins over the token", env: map[string]string{"AIRLOCK_TOKEN": "glpat-x", "AIRLOCK_TOKEN_FILE": "/t"},
			want: client.Options{PATFile: "/t"}},
		{name: "a malformed boolean names its variable", env: map[string]string{"AIRLOCK_PLAINTEXT": "yes please"}, wantErr: "env AIRLOCK_PLAINTEXT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := client.OptionsFromEnv(envOf(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || codeOf(err) != codes.InvalidArgument {
					t.Fatalf("err = %v, want InvalidArgument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.IssuerAddr != tc.want.IssuerAddr || got.GatewayAddr != tc.want.GatewayAddr || got.PAT != tc.want.PAT || got.PATFile != tc.want.PATFile ||
				got.Plaintext != tc.want.Plaintext || got.CAFile != tc.want.CAFile || got.CertFile != tc.want.CertFile || got.KeyFile != tc.want.KeyFile {
				t.Fatalf("Options = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func codeOf(err error) codes.Code {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return codes.Unknown
}

func TestDialRefusesIncompleteOptions(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    client.Options
		wantMsg string
	}{
		{"no token", client.Options{Plaintext: true}, "no personal access token"},
		{"token and token file", client.Options{PAT: "a", PATFile: empty}, "not both"},
		{"missing token file", client.Options{PATFile: filepath.Join(dir, "nope")}, "token file"},
		{"empty token file", client.Options{PATFile: empty}, "is empty"},
		{"plaintext with TLS files", client.Options{PAT: "a", Plaintext: true, CAFile: "ca.crt"}, "Plaintext conflicts"},
		{"certificate without key", client.Options{PAT: "a", CertFile: "c.crt"}, "together"},
		{"unreadable CA", client.Options{PAT: "a", CAFile: filepath.Join(dir, "nope.crt")}, "nope.crt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := client.Dial(tc.opts)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want InvalidArgument containing %q", err, tc.wantMsg)
			}
		})
	}
}

// startTCP serves the fake issuer and gateway on loopback, with TLS or not.
func startTCP(t *testing.T, tls bool) (*clienttest.Server, string) {
	t.Helper()
	iss := clienttest.NewIssuer(nil)
	iss.AddUser("glpat-demo")
	gw := clienttest.NewGateway(iss)
	opts := []clienttest.Option{clienttest.WithTCP()}
	if tls {
		opts = append(opts, clienttest.WithTLS())
	}
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) { iss.Register(s); gw.Register(s) }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ca := ""
	if tls {
		ca = filepath.Join(t.TempDir(), "ca.crt")
		if err := os.WriteFile(ca, srv.CACertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return srv, ca
}

func TestDialStreamsThroughBothConnections(t *testing.T) {
	for _, tls := range []bool{false, true} {
		srv, ca := startTCP(t, tls)
		tokenFile := filepath.Join(t.TempDir(), "demo.token")
		if err := os.WriteFile(tokenFile, []byte("glpat-demo\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conn, err := client.Dial(client.Options{IssuerAddr: srv.Addr(), GatewayAddr: srv.Addr(), Plaintext: !tls, CAFile: ca,
			PATFile: tokenFile, Features: []string{"duo_chat"}})
		if err != nil {
			t.Fatal(err)
		}
		c, err := conn.Complete(context.Background(), "duo_chat", client.User("hi"))
		conn.Close()
		if err != nil || c.Text != "Hello from the fake gateway." {
			t.Fatalf("tls=%v: Complete = %+v, %v", tls, c, err)
		}
	}
}

// TLS against a plaintext server, or the reverse, fails with a hint that
// names the setting to change.
func TestMixedUpTransportSaysWhatToDo(t *testing.T) {
	plain, _ := startTCP(t, false)
	secure, _ := startTCP(t, true)
	tests := []struct {
		name     string
		opts     client.Options
		wantHint string
	}{
		{"TLS client, plaintext server", client.Options{IssuerAddr: plain.Addr(), GatewayAddr: plain.Addr(), PAT: "glpat-demo"}, "--plaintext"},
		{"plaintext client, TLS server", client.Options{IssuerAddr: secure.Addr(), GatewayAddr: secure.Addr(), PAT: "glpat-demo", Plaintext: true}, "connect with TLS"},
		{"TLS client without the private CA", client.Options{IssuerAddr: secure.Addr(), GatewayAddr: secure.Addr(), PAT: "glpat-demo"}, "--ca"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := client.Dial(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The gateway call fails in its token source (the mint at the
			// issuer): the hint must survive that wrapping too.
			_, err = conn.Complete(context.Background(), "duo_chat", client.User("hi"))
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != codes.Unavailable || !strings.Contains(ce.Hint, tc.wantHint) || !strings.Contains(err.Error(), "hint: ") {
				t.Fatalf("err = %v, want Unavailable with a hint naming %q", err, tc.wantHint)
			}
		})
	}
}
