package clienttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a fake issuer and gateway; the issuer knows "glpat" (all
// features) and "glpat-chat" (duo_chat only).
func start(t *testing.T, opts ...Option) (*Server, *Issuer) {
	t.Helper()
	iss := NewIssuer(nil)
	iss.AddUser("glpat")
	iss.AddUser("glpat-chat", feature.DuoChat)
	gw := NewGateway(iss)
	srv, err := NewServer(func(s grpc.ServiceRegistrar) { iss.Register(s); gw.Register(s) }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, iss
}

func TestFakeGatewayRejectsAsTheRealOneWords(t *testing.T) {
	srv, _ := start(t)
	cc, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	mint := func(pat string, features ...string) *issuerv1.MintTokenResponse {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+pat)
		resp, err := issuerv1.NewTokenServiceClient(cc).MintToken(ctx, &issuerv1.MintTokenRequest{Features: features})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	chat := mint("glpat-chat")
	with := func(md map[string]string, drop ...string) []string {
		var kv []string
		for k, v := range md {
			skip := false
			for _, d := range drop {
				skip = skip || k == d
			}
			if !skip {
				kv = append(kv, k, v)
			}
		}
		return kv
	}
	for _, tc := range []struct {
		name    string
		md      []string
		feature string
		code    codes.Code
		msg     string
	}{
		{"no authorization", with(chat.GetMetadata(), "authorization"), "duo_chat", codes.Unauthenticated, "No authorization header presented"},
		{"not bearer", append(with(chat.GetMetadata(), "authorization"), "authorization", "Basic x"), "duo_chat", codes.Unauthenticated, "Invalid authorization header"},
		{"wrong auth type", append(with(chat.GetMetadata(), "x-gitlab-authentication-type"), "x-gitlab-authentication-type", "pat"), "duo_chat", codes.Unauthenticated, "Invalid authentication token type - only OIDC is supported"},
		{"unknown token", append(with(chat.GetMetadata(), "authorization"), "authorization", "Bearer a.b.c"), "duo_chat", codes.Unauthenticated, "Forbidden by auth provider"},
		{"instance mismatch", append(with(chat.GetMetadata(), "x-gitlab-instance-id"), "x-gitlab-instance-id", "other"), "duo_chat", codes.Unauthenticated, "Header mismatch 'X-Gitlab-Instance-Id'"},
		{"missing scope", with(chat.GetMetadata()), "code_completions", codes.PermissionDenied, "Unauthorized to access code completions"},
		{"unknown feature", with(chat.GetMetadata()), "poetry", codes.InvalidArgument, `unknown feature "poetry": want one of code_completions, code_generations, duo_chat`},
		{"valid", with(chat.GetMetadata()), "duo_chat", codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(context.Background(), tc.md...)
			_, err := gatewayv1.NewCompletionServiceClient(cc).Complete(ctx, &gatewayv1.CompleteRequest{Feature: tc.feature})
			if st := status.Convert(err); st.Code() != tc.code || st.Message() != tc.msg {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}
}

// pythonWithGRPC returns a python3 that can import grpc, or "".
func pythonWithGRPC() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import grpc, google.protobuf").Run() == nil {
			return p
		}
	}
	return ""
}

// TestPythonInterop runs python/interop_test.py (Debian's python3-grpcio)
// against the fakes over real sockets, plaintext and TLS, so the Python
// helper's metadata and both of its channel kinds are exercised here; CI
// runs the same script against the real binaries.
func TestPythonInterop(t *testing.T) {
	py := pythonWithGRPC()
	if py == "" {
		needs.Skip(t, "no python3 with grpc; run python/install-deps.sh")
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "..", "python", "interop_test.py")
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plaintext", []Option{WithTCP()}},
		{"tls", []Option{WithTCP(), WithTLS()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, iss := start(t, tc.opts...)
			dir := t.TempDir()
			pat := filepath.Join(dir, "pat")
			if err := os.WriteFile(pat, []byte("glpat\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append(os.Environ(), "AIRLOCK_ISSUER_ADDR="+srv.Addr(), "AIRLOCK_GATEWAY_ADDR="+srv.Addr(), "AIRLOCK_TOKEN_FILE="+pat)
			if srv.CACertPEM() == nil {
				env = append(env, "AIRLOCK_PLAINTEXT=true")
			} else {
				ca := filepath.Join(dir, "ca.crt")
				if err := os.WriteFile(ca, srv.CACertPEM(), 0o644); err != nil {
					t.Fatal(err)
				}
				env = append(env, "AIRLOCK_CA="+ca)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, script)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("interop_test.py: %v\n%s", err, out)
			}
			if iss.Mints() != 1 {
				t.Errorf("mints = %d, want 1", iss.Mints())
			}
			t.Logf("%s", out)
		})
	}
}
