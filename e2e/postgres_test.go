package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	"github.com/airlock-dev/airlock/issuer/kek"
	"github.com/airlock-dev/airlock/issuer/store"
	"github.com/airlock-dev/airlock/issuer/store/pgstore"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

const modelAPIKey = "sk-e2e-model-api-key-0123456789abcdef"

// TestPostgresDumpRevealsNoSecret runs the issuer on PostgreSQL, bootstraps,
// stores a model with an API key and mints, then searches a pg_dump of the
// database for every secret in every encoding it could take there.
func TestPostgresDumpRevealsNoSecret(t *testing.T) {
	srv := pgtest.Shared(t)
	url := srv.NewDatabase(t)
	c := startCluster(t, cluster.Config{IssuerArgs: []string{"--postgres-url", url}})
	c.createModel("keyed", "http://"+c.StubAddr+"/v1", modelAPIKey)
	c.mint(nil, 0)

	dump, err := srv.Dump(url)
	if err != nil {
		t.Fatal(err)
	}
	// The dump holds the tables in the encodings searched below: the PAT
	// hashes and the sealed blobs are there as bytea hex.
	demoHash := sha256.Sum256([]byte(c.pat("demo")))
	sealed := storedKeys(t, url)
	for what, want := range map[string]string{
		"the demo PAT's hash":   `\x` + hex.EncodeToString(demoHash[:]),
		"a sealed signing key":  `\x` + hex.EncodeToString(sealed[0].Sealed),
		"the model 'keyed'":     "keyed",
		"the issued_tokens row": "issued_tokens",
	} {
		if !bytes.Contains(dump, []byte(want)) {
			t.Fatalf("the dump lacks %s (%.40s…): the search below would prove nothing", what, want)
		}
	}

	secrets := map[string]string{}
	for _, u := range []string{"admin", "demo", "gateway"} {
		addForms(secrets, "PAT of "+u, []byte(c.pat(u)))
	}
	addForms(secrets, "model API key", []byte(modelAPIKey))
	kekFile, err := os.ReadFile(filepath.Join(c.DataDir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	kekRaw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(kekFile)))
	if err != nil || len(kekRaw) != 32 {
		t.Fatalf("dev KEK file: %d bytes, %v", len(kekRaw), err)
	}
	addForms(secrets, "key-encryption key", kekRaw)
	k, err := kek.Load("", "", c.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range sealed {
		der, err := k.Open(sk.Sealed, []byte("airlock/signing-key/"+sk.KID))
		if err != nil {
			t.Fatalf("unseal %s: %v", sk.KID, err)
		}
		addForms(secrets, "private key "+sk.KID+" (PKCS #8)", der)
		addForms(secrets, "private scalar of "+sk.KID, privateScalar(t, der))
	}
	for what, form := range secrets {
		if bytes.Contains(dump, []byte(form)) {
			t.Errorf("the dump holds %s", what)
		}
	}
	t.Logf("searched a %d-byte dump for %d forms of %d keys, 3 PATs, the model API key and the KEK", len(dump), len(secrets), len(sealed))
}

// addForms adds the encodings secret could take in a dump: raw, hex (bytea),
// base64 and base64url (whole, and windows from the middle, which catch a
// PEM body split over lines).
func addForms(m map[string]string, what string, secret []byte) {
	m[what+" raw"] = string(secret)
	m[what+" hex"] = hex.EncodeToString(secret)
	for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64url": base64.RawURLEncoding} {
		s := enc.EncodeToString(secret)
		m[what+" "+name] = s
		if len(s) > 64 {
			// Two windows 32 apart: a PEM line break (every 64 characters)
			// can split only one of them.
			m[what+" "+name+" window 1"] = s[len(s)/2-32 : len(s)/2-8]
			m[what+" "+name+" window 2"] = s[len(s)/2 : len(s)/2+24]
		}
	}
}

func privateScalar(t *testing.T, der []byte) []byte {
	t.Helper()
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		return p.D.Bytes()
	case *ecdsa.PrivateKey:
		d, _ := p.Bytes()
		return d
	case ed25519.PrivateKey:
		return p.Seed()
	}
	t.Fatalf("unexpected key type %T", priv)
	return nil
}

func storedKeys(t *testing.T, url string) []store.SigningKey {
	t.Helper()
	st, err := pgstore.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, _, err := st.ListKeys(context.Background())
	if err != nil || len(keys) == 0 {
		t.Fatalf("ListKeys: %d keys, %v", len(keys), err)
	}
	return keys
}

// TestMigrateStoreToPostgres grows a single-node installation into one on
// PostgreSQL with the real binaries: the PATs, the signing keys (so tokens
// minted before verify after) and the model configuration survive.
func TestMigrateStoreToPostgres(t *testing.T) {
	c := newCluster(t)
	c.createModel("keyed", "http://"+c.StubAddr+"/v1", modelAPIKey)
	before := c.mint(nil, 0)
	if text, err := c.stream(withToken(before), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("before the migration: %q, %v", text, err)
	}
	c.Gateway.Stop(10 * time.Second)
	c.Issuer.Stop(10 * time.Second)

	url := pgtest.NewDatabase(t)
	dataDir := c.DataDir
	out, err := exec.Command(filepath.Join(binDir, "issuer"), "migrate-store", "--from-data-dir", dataDir, "--to-postgres", url).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "copied 3 users, 3 personal access tokens") {
		t.Fatalf("migrate-store: %v\n%s", err, out)
	}
	t.Logf("migrate-store: %s", out)
	out, err = exec.Command(filepath.Join(binDir, "issuer"), "migrate-store", "--from-data-dir", dataDir, "--to-postgres", url).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "only fills an empty database") {
		t.Fatalf("a second migrate-store into the filled database: %v\n%s", err, out)
	}

	if err := c.RestartIssuer(context.Background(), "--postgres-url", url); err != nil {
		t.Fatal(err)
	}
	c.restartGateway()
	if !strings.Contains(c.Issuer.Output(), `"backend":"postgres"`) {
		t.Fatalf("the issuer did not log that it runs on PostgreSQL:\n%s", c.Issuer.Output())
	}
	// The token minted by the bbolt issuer verifies at a gateway fed by the
	// PostgreSQL one (same keys), and the old PAT mints.
	if text, err := c.stream(withToken(before), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("old token after the migration: %q, %v", text, err)
	}
	after := c.mint(nil, 0)
	// The global user id key moved with the rest: the user is the same one.
	if b, a := before.Metadata["x-gitlab-global-user-id"], after.Metadata["x-gitlab-global-user-id"]; b == "" || a != b {
		t.Fatalf("global user id before %q, after %q: want the same", b, a)
	}
	if text, err := c.stream(withToken(after), "code_completions"); err != nil || text != stubAnswer {
		t.Fatalf("new token from the old PAT: %q, %v", text, err)
	}
	got, err := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC)).GetModel(c.asUser(context.Background(), "admin"), &issuerv1.GetModelRequest{Name: "keyed"})
	m := got.GetModel()
	if err != nil || !m.GetHasApiKey() || m.GetEndpoint() != "http://"+c.StubAddr+"/v1" {
		t.Fatalf("model after the migration: %v, %v", m, err)
	}
	resp, err := http.Get(c.IssuerURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf(`airlock_issuer_store_schema_version{backend="postgres"} %d`, pgstore.LatestSchemaVersion()); !strings.Contains(string(metrics), want) {
		t.Fatalf("/metrics lacks %q", want)
	}
}
