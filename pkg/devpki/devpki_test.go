package devpki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func mustCA(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := NewCA("airlock test CA", 24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return c, k
}

func parseCert(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, rest := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("want exactly one CERTIFICATE block, got %q", certPEM)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return c
}

func TestNewCACreatesSelfSignedLeafOnlyCA(t *testing.T) {
	certPEM, keyPEM := mustCA(t)
	ca := parseCert(t, certPEM)
	if !ca.IsCA || !ca.MaxPathLenZero || ca.MaxPathLen != 0 {
		t.Errorf("IsCA=%v MaxPathLen=%d zero=%v, want a CA limited to leaves", ca.IsCA, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA lacks the certSign key usage")
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if got := time.Until(ca.NotAfter); got < 23*time.Hour || got > 25*time.Hour {
		t.Errorf("CA expires in %s, want about 24h", got)
	}
	if !ca.NotBefore.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("NotBefore %s is not backdated for clock skew", ca.NotBefore)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("key is not a PKCS#8 PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve.Params().Name != "P-256" {
		t.Fatalf("key is %T, want ECDSA P-256", k)
	}
	if !ek.PublicKey.Equal(ca.PublicKey) {
		t.Error("key does not match the CA certificate")
	}
}

func TestIssueCreatesLeafUsableForServerAndClientAuth(t *testing.T) {
	caPEM, caKeyPEM := mustCA(t)
	ca := parseCert(t, caPEM)
	certPEM, keyPEM, err := Issue(caPEM, caKeyPEM, "gateway", []string{"gateway", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	leaf := parseCert(t, certPEM)
	if leaf.Subject.CommonName != "gateway" {
		t.Errorf("CN = %q, want gateway", leaf.Subject.CommonName)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://airlock/gateway" {
		t.Errorf("URI SANs = %v, want [spiffe://airlock/gateway]", leaf.URIs)
	}
	if !slices.Equal(leaf.DNSNames, []string{"gateway", "localhost"}) {
		t.Errorf("DNS SANs = %v", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SANs = %v", leaf.IPAddresses)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if !bytes.Equal(leaf.AuthorityKeyId, ca.SubjectKeyId) {
		t.Error("leaf's authority key id does not name the CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, tc := range []struct {
		name string
		eku  x509.ExtKeyUsage
		dns  string
	}{
		{"server auth by DNS name", x509.ExtKeyUsageServerAuth, "gateway"},
		{"server auth by IP", x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"client auth", x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.dns, KeyUsages: []x509.ExtKeyUsage{tc.eku}})
			if err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
	kb, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(*ecdsa.PrivateKey).PublicKey.Equal(leaf.PublicKey) {
		t.Error("leaf key does not match its certificate")
	}
}

func TestIssueCapsLifetimeAtCAExpiry(t *testing.T) {
	caPEM, caKeyPEM, err := NewCA("short CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := Issue(caPEM, caKeyPEM, "issuer", nil, nil, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if leaf, ca := parseCert(t, certPEM), parseCert(t, caPEM); leaf.NotAfter.After(ca.NotAfter) {
		t.Errorf("leaf expires %s after its CA %s", leaf.NotAfter, ca.NotAfter)
	}
}

func TestIssueRejects(t *testing.T) {
	caPEM, caKeyPEM := mustCA(t)
	_, otherKeyPEM := mustCA(t)
	leafPEM, leafKeyPEM, err := Issue(caPEM, caKeyPEM, "leaf", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		caCert   []byte
		caKey    []byte
		cn       string
		dns      []string
		validity time.Duration
		want     error
	}{
		{"empty name", caPEM, caKeyPEM, "", nil, time.Hour, ErrInvalidName},
		{"upper-case name", caPEM, caKeyPEM, "Gateway", nil, time.Hour, ErrInvalidName},
		{"name with a slash", caPEM, caKeyPEM, "a/b", nil, time.Hour, ErrInvalidName},
		{"name over 64 characters", caPEM, caKeyPEM, string(bytes.Repeat([]byte("a"), 65)), nil, time.Hour, ErrInvalidName},
		{"empty DNS name", caPEM, caKeyPEM, "gw", []string{""}, time.Hour, ErrInvalidName},
		{"zero validity", caPEM, caKeyPEM, "gw", nil, 0, ErrInvalidValidity},
		{"validity over five years", caPEM, caKeyPEM, "gw", nil, 6 * 365 * 24 * time.Hour, ErrInvalidValidity},
		{"CA certificate not PEM", []byte("not pem"), caKeyPEM, "gw", nil, time.Hour, ErrInvalidCA},
		{"CA key not PEM", caPEM, []byte("not pem"), "gw", nil, time.Hour, ErrInvalidCA},
		{"key of another CA", caPEM, otherKeyPEM, "gw", nil, time.Hour, ErrInvalidCA},
		{"leaf used as CA", leafPEM, leafKeyPEM, "gw", nil, time.Hour, ErrInvalidCA},
		{"certificate and key swapped", caKeyPEM, caPEM, "gw", nil, time.Hour, ErrInvalidCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, k, err := Issue(tt.caCert, tt.caKey, tt.cn, tt.dns, nil, tt.validity)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if c != nil || k != nil {
				t.Error("returned material alongside an error")
			}
			for _, line := range bytes.Split(append(caKeyPEM, otherKeyPEM...), []byte("\n")) {
				if len(line) > 8 && !bytes.HasPrefix(line, []byte("-----")) && bytes.Contains([]byte(err.Error()), line) {
					t.Errorf("error %q contains key material", err)
				}
			}
		})
	}
}

func TestNewCARejects(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cn       string
		validity time.Duration
		want     error
	}{
		{"empty common name", "", time.Hour, ErrInvalidName},
		{"negative validity", "ca", -time.Hour, ErrInvalidValidity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := NewCA(tt.cn, tt.validity); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFilesLayoutAndModes(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	outDir := filepath.Join(dir, "certs")
	if err := CreateCAFiles(caDir, "files CA", time.Hour); err != nil {
		t.Fatalf("CreateCAFiles: %v", err)
	}
	if err := CreateCAFiles(caDir, "files CA", time.Hour); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateCAFiles err = %v, want ErrExists", err)
	}
	if err := IssueFiles(caDir, outDir, "issuer", []string{"issuer"}, nil, time.Hour); err != nil {
		t.Fatalf("IssueFiles: %v", err)
	}
	// Re-issuing replaces the old pair instead of failing.
	if err := IssueFiles(caDir, outDir, "issuer", []string{"issuer"}, nil, time.Hour); err != nil {
		t.Fatalf("IssueFiles again: %v", err)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(caDir, "ca.crt"), 0o644},
		{filepath.Join(caDir, "ca.key"), 0o600},
		{filepath.Join(outDir, "issuer.crt"), 0o644},
		{filepath.Join(outDir, "issuer.key"), 0o600},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Errorf("%s: %v", f.path, err)
			continue
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s mode = %v, want %v", f.path, fi.Mode().Perm(), f.mode)
		}
	}
	entries, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("out dir holds %d entries, want 2 (no temporary files left)", len(entries))
	}
	if err := IssueFiles(filepath.Join(dir, "missing"), outDir, "x", nil, nil, time.Hour); err == nil {
		t.Error("IssueFiles with a missing CA dir succeeded")
	}
}

// FuzzIssueCAInput feeds arbitrary bytes as the CA certificate and key: Issue
// must reject them with an error, never panic or sign with garbage.
func FuzzIssueCAInput(f *testing.F) {
	caPEM, caKeyPEM := mustCA(f)
	f.Add(caPEM, caKeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), caKeyPEM)
	f.Add(caPEM, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		c, _, err := Issue(certPEM, keyPEM, "fuzz", nil, nil, time.Hour)
		if err != nil {
			return
		}
		leaf := parseCert(t, c)
		ca, _, perr := parseCA(certPEM, keyPEM)
		if perr != nil {
			t.Fatalf("Issue accepted a CA that parseCA rejects: %v", perr)
		}
		if err := leaf.CheckSignatureFrom(ca); err != nil {
			t.Fatalf("issued leaf not signed by the given CA: %v", err)
		}
	})
}
