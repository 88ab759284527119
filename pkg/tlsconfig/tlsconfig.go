// Package tlsconfig builds the TLS configurations Airlock's servers and
// clients use from PEM files on disk: server TLS, mutual TLS when a client
// CA is given, and client TLS with an optional client certificate.
//
// Certificates and keys are re-read when their files change (checked on each
// handshake), so a rotated certificate takes effect without a restart; a
// broken replacement keeps the last good pair in use. CA bundles are read
// once, at construction.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrConfig is wrapped by every error this package returns for a missing,
// unreadable or invalid file or an inconsistent set of arguments.
var ErrConfig = errors.New("tlsconfig")

// MinVersion is the oldest protocol version either side accepts. TLS 1.3 is
// negotiated whenever both ends support it; 1.2 stays for older tools.
const MinVersion = tls.VersionTLS12

// cipherSuites restricts TLS 1.2 to forward-secret AEAD suites (TLS 1.3
// suites are not configurable and are all fine).
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server returns a server configuration presenting the certificate in
// certFile with the key in keyFile (both required). With clientCAFile set,
// every client must present a certificate that chains to a CA in that file
// (RequireAndVerifyClientCert, i.e. mutual TLS); empty means no client
// certificates are asked for. It fails if any file is missing or invalid,
// so a misconfigured server does not start.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("%w: server certificate and key files are both required", ErrConfig)
	}
	kp, err := newKeyPair(certFile, keyFile, time.Now)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     MinVersion,
		CipherSuites:   cipherSuites,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns a client configuration that verifies the server against
// the CAs in caFile (empty: the system roots) under serverName (empty: the
// host name dialled). certFile and keyFile, both set or both empty, are the
// client certificate presented for mutual TLS.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%w: client certificate and key files must be given together", ErrConfig)
	}
	cfg := &tls.Config{
		MinVersion:   MinVersion,
		CipherSuites: cipherSuites,
		ServerName:   serverName,
	}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		kp, err := newKeyPair(certFile, keyFile, time.Now)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pemBytes, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: read CA bundle: %w", ErrConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%w: CA bundle %s holds no PEM certificate", ErrConfig, file)
	}
	return pool, nil
}

// reloadCheckInterval bounds how often a handshake stats the files; under a
// burst of new connections one stat per second is plenty.
const reloadCheckInterval = time.Second

// keyPair serves a certificate and re-reads its files when their size or
// modification time changes.
type keyPair struct {
	certFile, keyFile string
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp stamp
	keyStamp  stamp
	checked   time.Time
}

type stamp struct {
	size int64
	mod  time.Time
}

func newKeyPair(certFile, keyFile string, now func() time.Time) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile, now: now}
	if err := kp.load(); err != nil {
		return nil, err
	}
	kp.checked = now()
	return kp, nil
}

func statFile(name string) (stamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return stamp{}, err
	}
	return stamp{size: fi.Size(), mod: fi.ModTime()}, nil
}

// load reads both files; caller holds mu (or has the only reference).
func (kp *keyPair) load() error {
	cs, err := statFile(kp.certFile)
	if err != nil {
		return fmt.Errorf("%w: certificate: %w", ErrConfig, err)
	}
	ks, err := statFile(kp.keyFile)
	if err != nil {
		return fmt.Errorf("%w: key: %w", ErrConfig, err)
	}
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		// tls errors name files and formats, never key bytes.
		return fmt.Errorf("%w: load key pair %s: %w", ErrConfig, kp.certFile, err)
	}
	kp.cert, kp.certStamp, kp.keyStamp = &cert, cs, ks
	return nil
}

// get returns the current certificate, reloading it first if its files
// changed. A failed reload (half-written file, mismatched pair) keeps the
// previous certificate: serving the old one until it expires beats
// refusing every handshake.
func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := kp.now()
	if now.Sub(kp.checked) < reloadCheckInterval {
		return kp.cert, nil
	}
	kp.checked = now
	cs, err1 := statFile(kp.certFile)
	ks, err2 := statFile(kp.keyFile)
	if err1 != nil || err2 != nil || (cs == kp.certStamp && ks == kp.keyStamp) {
		return kp.cert, nil
	}
	// load assigns only on success, so on failure the old pair stays; the
	// stamps stay old too, so the next check retries the files.
	_ = kp.load()
	return kp.cert, nil
}
