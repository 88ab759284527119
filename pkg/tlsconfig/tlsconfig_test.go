package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/pkg/devpki"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a throwaway PKI on disk: a trusted CA with server and client
// certificates, and an unrelated CA with a client certificate of its own.
type pki struct {
	dir                   string
	caCert, otherCACert   string
	serverCert, serverKey string
	clientCert, clientKey string
	rogueCert, rogueKey   string
}

func newPKI(t testing.TB) pki {
	t.Helper()
	dir := t.TempDir()
	ca, other, out := filepath.Join(dir, "ca"), filepath.Join(dir, "other"), filepath.Join(dir, "certs")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(devpki.CreateCAFiles(ca, "test CA", time.Hour))
	must(devpki.CreateCAFiles(other, "other CA", time.Hour))
	must(devpki.IssueFiles(ca, out, "issuer", []string{"issuer", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour))
	must(devpki.IssueFiles(ca, out, "gateway", []string{"gateway"}, nil, time.Hour))
	must(devpki.IssueFiles(other, out, "rogue", []string{"rogue"}, nil, time.Hour))
	p := func(d, f string) string { return filepath.Join(d, f) }
	return pki{
		dir:    dir,
		caCert: p(ca, devpki.CACertFile), otherCACert: p(other, devpki.CACertFile),
		serverCert: p(out, "issuer.crt"), serverKey: p(out, "issuer.key"),
		clientCert: p(out, "gateway.crt"), clientKey: p(out, "gateway.key"),
		rogueCert: p(out, "rogue.crt"), rogueKey: p(out, "rogue.key"),
	}
}

// handshake runs one TLS handshake over loopback and returns the client's
// error and the server's view of the connection.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (cliErr error, srvState tls.ConnectionState, srvErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		st  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		sc := tls.Server(c, srvCfg)
		err = sc.Handshake()
		if err == nil {
			// With TLS 1.3 the client finishes before the server has
			// checked the client certificate; a round trip of one byte
			// surfaces the verdict on both sides.
			if _, err = sc.Read(make([]byte, 1)); err == nil {
				_, err = sc.Write([]byte{1})
			}
		}
		done <- result{sc.ConnectionState(), err}
	}()
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	cc := tls.Client(conn, cliCfg)
	cliErr = cc.Handshake()
	if cliErr == nil {
		_, cliErr = cc.Write([]byte{1})
		if cliErr == nil {
			// The server's rejection of our certificate arrives as an alert.
			_, cliErr = cc.Read(make([]byte, 1))
		}
	}
	cc.Close()
	r := <-done
	return cliErr, r.st, r.err
}

func TestHandshake(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name         string
		clientCA     string // server side; "" = TLS without client certs
		rootCA       string
		cert, key    string
		serverName   string
		maxVersion   uint16
		wantOK       bool
		wantIdentity string
	}{
		{name: "TLS without client certificate", rootCA: p.caCert, serverName: "issuer", wantOK: true},
		{name: "server verified by IP SAN", rootCA: p.caCert, serverName: "127.0.0.1", wantOK: true},
		{name: "mutual TLS with a certificate from the trusted CA", clientCA: p.caCert, rootCA: p.caCert, cert: p.clientCert, key: p.clientKey, serverName: "issuer", wantOK: true, wantIdentity: "spiffe://airlock/gateway"},
		{name: "mutual TLS refuses a client without certificate", clientCA: p.caCert, rootCA: p.caCert, serverName: "issuer"},
		{name: "mutual TLS refuses a certificate from another CA", clientCA: p.caCert, rootCA: p.caCert, cert: p.rogueCert, key: p.rogueKey, serverName: "issuer"},
		{name: "client refuses a server from an untrusted CA", rootCA: p.otherCACert, serverName: "issuer"},
		{name: "client refuses a server certificate for another name", rootCA: p.caCert, serverName: "gateway"},
		{name: "server refuses TLS 1.1", rootCA: p.caCert, serverName: "issuer", maxVersion: tls.VersionTLS11},
		{name: "TLS 1.2 still accepted", rootCA: p.caCert, serverName: "issuer", maxVersion: tls.VersionTLS12, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := Server(p.serverCert, p.serverKey, tt.clientCA)
			if err != nil {
				t.Fatalf("Server: %v", err)
			}
			cli, err := Client(tt.rootCA, tt.cert, tt.key, tt.serverName)
			if err != nil {
				t.Fatalf("Client: %v", err)
			}
			if tt.maxVersion != 0 {
				cli.MinVersion, cli.MaxVersion = tls.VersionTLS10, tt.maxVersion
			}
			cliErr, st, srvErr := handshake(t, srv, cli)
			if tt.wantOK {
				if cliErr != nil || srvErr != nil {
					t.Fatalf("handshake failed: client %v, server %v", cliErr, srvErr)
				}
			} else {
				if cliErr == nil && srvErr == nil {
					t.Fatal("handshake succeeded, want failure")
				}
				return
			}
			if tt.maxVersion == 0 && st.Version != tls.VersionTLS13 {
				t.Errorf("negotiated %s, want TLS 1.3 when both sides support it", tls.VersionName(st.Version))
			}
			var got string
			if len(st.VerifiedChains) > 0 {
				got, _ = CertificateIdentity(st.VerifiedChains[0][0])
			}
			if got != tt.wantIdentity {
				t.Errorf("verified client identity = %q, want %q", got, tt.wantIdentity)
			}
		})
	}
}

func TestConstructorsFailClosed(t *testing.T) {
	p := newPKI(t)
	garbage := filepath.Join(p.dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(p.dir, "missing.pem")
	tests := []struct {
		name string
		make func() (*tls.Config, error)
	}{
		{"server without certificate", func() (*tls.Config, error) { return Server("", p.serverKey, "") }},
		{"server without key", func() (*tls.Config, error) { return Server(p.serverCert, "", "") }},
		{"server certificate file missing", func() (*tls.Config, error) { return Server(missing, p.serverKey, "") }},
		{"server key of another certificate", func() (*tls.Config, error) { return Server(p.serverCert, p.clientKey, "") }},
		{"server certificate not PEM", func() (*tls.Config, error) { return Server(garbage, p.serverKey, "") }},
		{"client CA file missing", func() (*tls.Config, error) { return Server(p.serverCert, p.serverKey, missing) }},
		{"client CA file without certificates", func() (*tls.Config, error) { return Server(p.serverCert, p.serverKey, garbage) }},
		{"client certificate without key", func() (*tls.Config, error) { return Client(p.caCert, p.clientCert, "", "issuer") }},
		{"client key without certificate", func() (*tls.Config, error) { return Client(p.caCert, "", p.clientKey, "issuer") }},
		{"client root CA missing", func() (*tls.Config, error) { return Client(missing, "", "", "issuer") }},
		{"client root CA without certificates", func() (*tls.Config, error) { return Client(garbage, "", "", "issuer") }},
		{"client pair mismatched", func() (*tls.Config, error) { return Client(p.caCert, p.clientCert, p.serverKey, "issuer") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.make()
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			if cfg != nil {
				t.Error("returned a config alongside an error")
			}
		})
	}
	t.Run("missing file error keeps fs.ErrNotExist", func(t *testing.T) {
		if _, err := Server(missing, p.serverKey, ""); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist in the chain", err)
		}
	})
}

func TestClientWithoutCAUsesSystemRoots(t *testing.T) {
	cfg, err := Client("", "", "", "example")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs != nil || cfg.GetClientCertificate != nil || cfg.ServerName != "example" {
		t.Errorf("RootCAs=%v GetClientCertificate set=%v ServerName=%q", cfg.RootCAs, cfg.GetClientCertificate != nil, cfg.ServerName)
	}
}

func serial(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

func TestKeyPairReloadsChangedFilesAndKeepsLastGoodPair(t *testing.T) {
	p := newPKI(t)
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	kp, err := newKeyPair(p.serverCert, p.serverKey, clock)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := kp.get()
	firstSerial := serial(t, first)

	// Re-issue in place; force a distinct mtime because a fast rewrite may
	// land in the same timestamp tick.
	caDir, outDir := filepath.Dir(p.caCert), filepath.Dir(p.serverCert)
	if err := devpki.IssueFiles(caDir, outDir, "issuer", []string{"issuer"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	for _, f := range []string{p.serverCert, p.serverKey} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}

	c, _ := kp.get()
	if got := serial(t, c); got != firstSerial {
		t.Fatalf("reloaded within %s of the last check; want the cached pair", reloadCheckInterval)
	}
	now = now.Add(2 * reloadCheckInterval)
	c, _ = kp.get()
	secondSerial := serial(t, c)
	if secondSerial == firstSerial {
		t.Fatal("changed files were not reloaded")
	}

	// A broken replacement keeps serving the last good pair.
	if err := os.WriteFile(p.serverCert, []byte("half written"), 0o644); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * reloadCheckInterval)
	c, err = kp.get()
	if err != nil || serial(t, c) != secondSerial {
		t.Fatalf("after a broken replacement got err=%v; want the last good pair", err)
	}
}
