package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
	"github.com/airlock-dev/airlock/issuer/httpapi"
	"github.com/airlock-dev/airlock/issuer/internal/testenv"
	"github.com/airlock-dev/airlock/issuer/keys"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/token"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T, e *testenv.Env) *httptest.Server {
	srv := httptest.NewServer(httpapi.Handler(httpapi.Config{Keys: e.Keys, Issuer: testenv.Issuer, Now: e.Clock.Now}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func mint(t *testing.T, e *testenv.Env) string {
	t.Helper()
	resp, err := e.Tokens().MintToken(testenv.Ctx(e.User), &issuerv1.MintTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken()
}

func TestJWKSVerifiesMintedTokens(t *testing.T) {
	e := testenv.New(t, testenv.Options{Alg: keys.RS256})
	srv := serve(t, e)
	tok := mint(t, e)
	resp, body := get(t, srv.URL+httpapi.PathJWKS)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.Parse([]byte(tok), jwt.WithKeySet(set), jwt.WithAudience(token.Audience), jwt.WithIssuer(testenv.Issuer),
		jwt.WithClock(jwt.ClockFunc(e.Clock.Now)))
	if err != nil {
		t.Fatalf("JWKS does not verify a minted token: %v", err)
	}
	if parsed.Subject() != e.InstanceID {
		t.Fatalf("sub = %q", parsed.Subject())
	}

	// max-age ends no later than the prepared key's activation and is positive.
	cc := resp.Header.Get("Cache-Control")
	age, err := strconv.Atoi(strings.TrimPrefix(cc, "max-age="))
	if err != nil || age <= 0 {
		t.Fatalf("Cache-Control %q", cc)
	}
	if next := e.Keys.KeySet().NextActivation; e.Clock.Now().Add(time.Duration(age) * time.Second).After(next) {
		t.Fatalf("max-age %d s outlives the next activation at %v", age, next)
	}
}

func TestDiscovery(t *testing.T) {
	e := testenv.New(t, testenv.Options{Alg: keys.RS256})
	srv := serve(t, e)
	resp, body := get(t, srv.URL+httpapi.PathDiscovery)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != testenv.Issuer || doc.JWKSURI != testenv.Issuer+httpapi.PathJWKS || len(doc.Algs) != 1 || doc.Algs[0] != "RS256" {
		t.Fatalf("discovery = %+v", doc)
	}
	if resp, _ := get(t, srv.URL+httpapi.PathHealth); resp.StatusCode != 200 {
		t.Fatalf("healthz = %d", resp.StatusCode)
	}
	r, err := http.Post(srv.URL+httpapi.PathJWKS, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST = %d, want 405", r.StatusCode)
	}
}

// TestPythonJOSEInterop verifies the issuer's tokens against its HTTP JWKS
// with standard Python JOSE libraries, without help: python-jose, the
// library the real AI gateway uses, called the way it calls it, and PyJWT.
func TestPythonJOSEInterop(t *testing.T) {
	libs := []struct {
		name, module, pkg, script string
	}{
		{"python-jose", "jose", "python3-jose", `
import json, sys
from jose import jwt
jwks = json.load(open(sys.argv[1]))
claims = jwt.decode(sys.argv[2], jwks, audience="gitlab-ai-gateway", algorithms=["RS256"])
print(json.dumps(claims))
`},
		{"PyJWT", "jwt", "python3-jwt python3-cryptography", `
import json, sys, jwt
jwks = jwt.PyJWKSet.from_json(open(sys.argv[1]).read())
kid = jwt.get_unverified_header(sys.argv[2])["kid"]
key = [k for k in jwks.keys if k.key_id == kid][0]
claims = jwt.decode(sys.argv[2], key.key, audience="gitlab-ai-gateway", algorithms=["RS256"])
print(json.dumps(claims))
`},
	}
	// Both check exp and nbf against the wall clock: mint at real time.
	e := testenv.New(t, testenv.Options{Alg: keys.RS256})
	e.Clock.Add(time.Since(testenv.Start))
	srv := serve(t, e)
	tok := mint(t, e)
	_, jwks := get(t, srv.URL+httpapi.PathJWKS)
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, lib := range libs {
		t.Run(lib.name, func(t *testing.T) {
			python := pythonWith(lib.module)
			if python == "" {
				needs.Skip(t, lib.name+" is not installed (apt-get install "+lib.pkg+"); skipping the interoperability test")
			}
			out, err := exec.Command(python, "-c", lib.script, jwksFile, tok).CombinedOutput()
			if err != nil {
				t.Fatalf("%s rejected the token: %v\n%s", lib.name, err, out)
			}
			var claims map[string]any
			if err := json.Unmarshal(out, &claims); err != nil {
				t.Fatalf("python output %q: %v", out, err)
			}
			if claims["sub"] != e.InstanceID || claims["gitlab_realm"] != "self-managed" {
				t.Fatalf("%s claims = %v", lib.name, claims)
			}
			// And it rejects a token whose signature does not match.
			bad := tok[:len(tok)-4] + "AAAA"
			if out, err := exec.Command(python, "-c", lib.script, jwksFile, bad).CombinedOutput(); err == nil {
				t.Fatalf("%s accepted a tampered token: %s", lib.name, out)
			}
		})
	}
}

// pythonWith returns a Python interpreter that can import module: the one
// on PATH, or the system one that Debian's packages install into (PATH may
// point at another Python, e.g. pyenv).
func pythonWith(module string) string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import "+module).Run() == nil {
			return p
		}
	}
	return ""
}
