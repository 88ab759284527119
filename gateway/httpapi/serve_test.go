package httpapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/pkg/devpki"
	"github.com/airlock-dev/airlock/pkg/tlsconfig"
)

// Under mutual TLS (the gateway's --tls-client-ca), the HTTP API refuses a
// client without a certificate and serves one with a certificate, over
// HTTP/2 as over gRPC.
func TestServeRequiresClientCertificatesUnderMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, err := devpki.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := devpki.Issue(caCert, caKey, "gateway", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := devpki.Issue(caCert, caKey, "tool", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tc, err := tlsconfig.Server(write("s.crt", srvCert), write("s.key", srvKey), write("ca.crt", caCert))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(r.Proto)) })
	go func() {
		done <- Serve(ctx, lis, ok, ServeOptions{TLS: tc, Grace: time.Second, MaxStreamsPerConn: 8, Logger: zerolog.Nop()})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caCert)
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	get := func(certs []tls.Certificate) (string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + lis.Addr().String() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		return resp.Proto, nil
	}
	if _, err := get(nil); err == nil {
		t.Error("a client without a certificate was served")
	}
	if proto, err := get([]tls.Certificate{pair}); err != nil || proto != "HTTP/2.0" {
		t.Errorf("client with a certificate: %q, %v; want HTTP/2.0", proto, err)
	}
}
