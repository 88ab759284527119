package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/faultmodel"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/store/boltstore"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// leakAPIKey is distinctive so that any copy of it, anywhere, is found.
const leakAPIKey = "sk-airlockLEAKCANARY-7f3a9c2e51d04b8e"

// evidence is everything a full run exposed, by where it came from.
type evidence map[string][]byte

func (e evidence) add(where string, b []byte) { e[where] = append(e[where], b...) }

func (e evidence) addErr(where string, err error) {
	if err == nil {
		return
	}
	st, _ := status.FromError(err)
	e.add("error: "+where, []byte(st.Message()+"\n"+prototext.Format(st.Proto())+"\n"))
}

func (e evidence) addMsg(where string, m proto.Message) {
	e.add("response: "+where, []byte(prototext.Format(m)+"\n"))
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

func TestNoSecretLeaks(t *testing.T) {
	t.Setenv("AIRLOCK_ISSUER_LOG_LEVEL", "debug") // the most verbose logs are the likeliest to leak
	c := startCluster(t, cluster.Config{FaultModel: &faultModel, GatewayHTTP: true, GatewayArgs: []string{"--log-level", "debug"}})
	fm := c.Faults
	ev := evidence{}

	// Models with the key: one healthy, one whose server echoes the key in
	// a 401.
	c.createModel("keyed", "http://"+c.StubAddr+"/v1", leakAPIKey)
	c.createModel("echoes", fm.URL(faultmodel.EchoKey), leakAPIKey)
	c.bind("duo_chat", "keyed")
	c.bind("code_generations", "echoes")
	models := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
	admin := c.asUser(context.Background(), "admin")
	if got, err := models.GetModel(admin, &issuerv1.GetModelRequest{Name: "keyed"}); err != nil {
		t.Fatalf("GetModel: %v", err)
	} else {
		ev.addMsg("GetModel", got)
	}
	if got, err := models.ListModels(admin, &issuerv1.ListModelsRequest{}); err != nil {
		t.Fatalf("ListModels: %v", err)
	} else {
		ev.addMsg("ListModels", got)
	}

	// Tokens: good, revoked, and a rotation in between.
	var bearers []string
	mint := func(features []string) map[string]string {
		tok := c.mint(features, 0)
		ev.addMsg("MintToken (metadata removed)", &issuerv1.MintTokenResponse{Jti: tok.ID, Scopes: tok.Scopes, ExpireTime: timestamppb.New(tok.Expiry)})
		bearers = append(bearers, tok.AccessToken)
		return cluster.Metadata(tok)
	}
	good := mint(nil)
	codeOnly := mint([]string{"code_completions"})
	keys := issuerv1.NewKeyServiceClient(dial(t, c.IssuerGRPC))
	if _, err := keys.RotateKeys(admin, &issuerv1.RotateKeysRequest{}); err != nil {
		t.Fatalf("RotateKeys: %v", err)
	}
	afterRotation := mint(nil)
	revoked := c.mint(nil, 0)
	bearers = append(bearers, revoked.AccessToken)
	tokens := issuerv1.NewTokenServiceClient(dial(t, c.IssuerGRPC))
	if _, err := tokens.RevokeToken(c.asUser(context.Background(), "demo"), &issuerv1.RevokeTokenRequest{Jti: revoked.ID}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}

	// The healthy flow, with the key in use (duo_chat waits for the catalog
	// to route to the keyed model).
	deadline := time.Now().Add(5 * time.Second)
	for {
		gw := gatewayv1.NewCompletionServiceClient(dial(t, c.GatewayGRPC))
		resp, err := gw.Complete(withMetadata(afterRotation), &gatewayv1.CompleteRequest{Feature: "duo_chat",
			Messages: []*gatewayv1.Message{{Role: "user", Content: "hello"}}})
		if err == nil && resp.GetDone().GetModel() == "keyed" {
			ev.addMsg("Complete", resp)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("duo_chat through the keyed model: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	text, err := c.stream(withMetadata(good), "duo_chat")
	ev.addErr("stream good", err)
	ev.add("response: stream good", []byte(text))

	// The model that echoes the key in its 401: the bait is real (asked
	// directly it quotes the key), and the gateway must not pass it on.
	req, _ := http.NewRequest(http.MethodPost, fm.URL(faultmodel.EchoKey)+"/chat/completions", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+leakAPIKey)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte(leakAPIKey)) {
			t.Fatalf("echoing model's answer %q lacks the key: the bait does not work", body)
		}
	}
	err, _ = c.untilFailing(good, "code_generations", "echoes")
	ev.addErr("401 echoing the key", err)
	if !strings.Contains(status.Convert(err).Message(), "rejected the gateway's credentials") {
		t.Errorf("echoing model: %v, want the credentials failure", err)
	}

	// Refused tokens: each refusal message is evidence.
	tampered := strings.Clone(good["authorization"])
	tampered = tampered[:len(tampered)-4] + "AAAA"
	refusals := map[string]map[string]string{
		"revoked":          cluster.Metadata(revoked),
		"forged":           with(good, "authorization", "Bearer "+forged(t, c, good, nil)),
		"tampered":         with(good, "authorization", tampered),
		"wrong instance":   with(good, "x-gitlab-instance-id", uuid.NewString()),
		"not bearer":       with(good, "authorization", strings.Replace(good["authorization"], "Bearer ", "Token ", 1)),
		"missing scope":    codeOnly,
		"token as garbage": with(good, "authorization", "Bearer "+strings.Repeat(strings.TrimPrefix(good["authorization"], "Bearer "), 2)),
	}
	time.Sleep(300 * time.Millisecond) // the revocation reaches the gateway
	for name, md := range refusals {
		bearers = append(bearers, strings.TrimPrefix(md["authorization"], "Bearer "))
		_, err := c.stream(withMetadata(md), "duo_chat")
		if err == nil {
			t.Errorf("%s token accepted", name)
		}
		ev.addErr("refused "+name, err)
	}
	// The issuer refusing a bad personal access token.
	badPAT := metadataPAT(c.pat("demo") + "x")
	_, err = tokens.MintToken(badPAT, &issuerv1.MintTokenRequest{})
	if err == nil {
		t.Error("MintToken with a wrong PAT succeeded")
	}
	ev.addErr("MintToken with a wrong PAT", err)

	// Metrics and public key documents.
	ev.add("gateway /metrics", httpGet(t, "http://"+c.GatewayHTTP+"/metrics"))
	ev.add("issuer /metrics", httpGet(t, c.IssuerURL()+"/metrics"))
	ev.add("issuer JWKS", httpGet(t, c.JWKSURL()))

	// Stop everything so that every log line is written, then read the
	// whole logs.
	for _, p := range []*cluster.Proc{c.Gateway, c.Issuer, c.Stub} {
		p.Stop(10 * time.Second)
	}
	for _, p := range []*cluster.Proc{c.Issuer, c.Gateway, c.Stub} {
		log, err := p.Log()
		if err != nil {
			t.Fatal(err)
		}
		ev.add("log: "+p.Name, log)
	}
	if !bytes.Contains(ev["log: gateway"], []byte("model server rejected")) && !bytes.Contains(ev["log: gateway"], []byte("FailedPrecondition")) {
		t.Errorf("gateway log lacks the 401 failure: the evidence is incomplete")
	}

	// The secrets, in the forms they could leak in.
	issuerDir := c.DataDir
	secrets := map[string][]string{"model API key": {leakAPIKey}}
	for _, u := range []string{"admin", "demo", "gateway"} {
		secrets["PAT of "+u] = []string{c.pat(u)}
	}
	for i, b := range bearers {
		parts := strings.Split(b, ".")
		forms := []string{b}
		if len(parts) == 3 && len(parts[2]) >= 16 {
			forms = append(forms, parts[2]) // the claims alone are not secret
		}
		secrets[fmt.Sprintf("bearer token %d", i)] = forms
	}
	for kid, forms := range privateKeyForms(t, issuerDir) {
		secrets["private key "+kid] = forms
	}
	dataFiles := readDataFiles(t, issuerDir)

	checked := 0
	for what, forms := range secrets {
		for _, form := range forms {
			for where, b := range ev {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("%s appears in %s", what, where)
				}
				checked++
			}
			for path, b := range dataFiles {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("%s appears in clear in data file %s", what, path)
				}
				checked++
			}
		}
	}
	// Private key material by shape, wherever it came from.
	for where, b := range merge(ev, dataFiles) {
		for _, marker := range []string{"PRIVATE KEY-----", `"d":"`, `"d": "`, `"p":"`, `"q":"`} {
			if bytes.Contains(b, []byte(marker)) {
				t.Errorf("%s contains %q", where, marker)
			}
		}
	}
	t.Logf("%d secrets (%d PEM/JWK private keys) × %d sources and %d data files: %d checks, evidence %d bytes",
		len(secrets), len(secrets)-4-len(bearers), len(ev), len(dataFiles), checked, size(ev))
}

func with(base map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for kk, vv := range base {
		out[kk] = vv
	}
	out[k] = v
	return out
}

func metadataPAT(pat string) context.Context {
	return withMetadata(map[string]string{"authorization": "Bearer " + pat})
}

// readDataFiles reads the issuer's data directory except the files that
// hold secrets by design: the key-encryption key and the bootstrap
// credentials written for the operator.
func readDataFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			if rel == "credentials" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel == "kek" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out[boltstore.FileName]) == 0 {
		t.Fatalf("no %s in %s", boltstore.FileName, dir)
	}
	return out
}

// privateKeyForms unseals every stored signing key (the issuer must be
// stopped) and returns, per kid, the encodings its private part could leak
// in: PKCS #8 DER, the base64 of a PEM body's first line, the JWK "d"
// value, and the raw private scalar/exponent bytes.
func privateKeyForms(t *testing.T, dir string) map[string][]string {
	t.Helper()
	k, err := kek.Load("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(dir)
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	defer st.Close()
	stored, _, err := st.ListKeys(context.Background())
	if err != nil || len(stored) < 2 {
		t.Fatalf("ListKeys: %d keys, %v; want at least 2 after a rotation", len(stored), err)
	}
	out := map[string][]string{}
	for _, sk := range stored {
		der, err := k.Open(sk.Sealed, []byte("airlock/signing-key/"+sk.KID))
		if err != nil {
			t.Fatalf("unseal %s: %v", sk.KID, err)
		}
		b64 := base64.StdEncoding.EncodeToString(der)
		mid := len(b64) / 2
		forms := []string{string(der), b64[:64], b64[mid : mid+64]}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("parse %s: %v", sk.KID, err)
		}
		var d []byte
		switch p := priv.(type) {
		case *rsa.PrivateKey:
			d = p.D.Bytes()
			forms = append(forms, base64.RawURLEncoding.EncodeToString(p.Primes[0].Bytes()), p.D.String())
		case *ecdsa.PrivateKey:
			d, _ = p.Bytes()
		case ed25519.PrivateKey:
			d = p.Seed()
		default:
			t.Fatalf("key %s: unexpected type %T", sk.KID, priv)
		}
		forms = append(forms, base64.RawURLEncoding.EncodeToString(d), base64.StdEncoding.EncodeToString(d)[:16], string(d))
		out[sk.KID] = forms
	}
	return out
}

func merge(a, b map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out["data file "+k] = v
	}
	return out
}

func size(m map[string][]byte) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}
