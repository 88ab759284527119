// Package devpki is a small private certificate authority for test and
// development clusters: it creates a CA and issues ECDSA P-256 leaf
// certificates that work for both sides of mutual TLS between tools, the
// gateway and the issuer.
//
// Every leaf carries a URI SAN spiffe://airlock/<name> (see IdentityURI) so a
// server can map a verified client certificate to a service identity, for
// example the issuer recognising the gateway. It is not meant to run a
// production PKI: there is no revocation and keys are written as plain PEM.
package devpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"time"
)

// TrustDomain is the SPIFFE trust domain of every identity URI devpki issues.
const TrustDomain = "airlock"

// backdate makes fresh certificates valid on machines whose clocks lag a
// little behind the one that issued them (containers, VMs after resume).
const backdate = 5 * time.Minute

// maxValidity bounds certificate lifetimes: a throwaway test PKI with
// ten-year certificates is how test keys end up trusted in production.
const maxValidity = 5 * 365 * 24 * time.Hour

// Errors returned by NewCA and Issue; wrapped with detail, match with errors.Is.
var (
	// ErrInvalidName means a common name is empty or is not usable as a
	// service name (lower-case letters, digits, '-', '_', '.'; 1–64 chars).
	ErrInvalidName = errors.New("devpki: invalid name")
	// ErrInvalidValidity means the validity is not positive or exceeds five years.
	ErrInvalidValidity = errors.New("devpki: invalid validity")
	// ErrInvalidCA means the CA certificate or key PEM cannot be used to sign.
	ErrInvalidCA = errors.New("devpki: invalid CA")
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// IdentityURI returns the URI SAN devpki puts in the certificate for name:
// spiffe://airlock/<name>.
func IdentityURI(name string) string {
	return (&url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + name}).String()
}

// NewCA creates a self-signed CA certificate named commonName, valid from
// five minutes ago for validity, with a fresh ECDSA P-256 key. It returns
// the certificate and the PKCS#8 private key, both PEM encoded. The CA may
// sign leaf certificates only (path length 0).
func NewCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" || len(commonName) > 64 {
		return nil, nil, fmt.Errorf("%w: CA common name must be 1-64 characters", ErrInvalidName)
	}
	if err := checkValidity(validity); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"Airlock dev PKI"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Issue signs a leaf certificate for the service commonName with the CA
// given as PEM (as NewCA returns it). The leaf has a fresh ECDSA P-256 key,
// both serverAuth and clientAuth extended key usages, the DNS and IP SANs
// given, and the URI SAN IdentityURI(commonName). Its lifetime is validity,
// cut to the CA's own expiry. commonName must match ErrInvalidName's rule
// because it becomes a service identity.
func Issue(caCertPEM, caKeyPEM []byte, commonName string, dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !nameRE.MatchString(commonName) {
		return nil, nil, fmt.Errorf("%w: %q: want 1-64 of a-z 0-9 . _ - starting with a letter or digit", ErrInvalidName, commonName)
	}
	if err := checkValidity(validity); err != nil {
		return nil, nil, err
	}
	for _, d := range dnsNames {
		if d == "" {
			return nil, nil, fmt.Errorf("%w: empty DNS name", ErrInvalidName)
		}
	}
	caCert, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	uri, err := url.Parse(IdentityURI(commonName))
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: identity URI: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(caCert.NotAfter) {
		// A leaf outliving its CA would fail verification anyway; say so
		// by its dates instead of surprising the operator later.
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: commonName, Organization: []string{"Airlock dev PKI"}},
		NotBefore:      now.Add(-backdate),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:       append([]string(nil), dnsNames...),
		IPAddresses:    append([]net.IP(nil), ips...),
		URIs:           []*url.URL{uri},
		SubjectKeyId:   keyID(&key.PublicKey),
		AuthorityKeyId: caCert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("devpki: sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func checkValidity(v time.Duration) error {
	if v <= 0 || v > maxValidity {
		return fmt.Errorf("%w: %s: want more than 0 and at most %s", ErrInvalidValidity, v, maxValidity)
	}
	return nil
}

// parseCA accepts only a CA certificate whose key matches it, so a mix-up of
// files fails here instead of producing leaves nobody can verify.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%w: certificate is not a PEM CERTIFICATE block", ErrInvalidCA)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: parse certificate: %v", ErrInvalidCA, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("%w: certificate %q is not a CA", ErrInvalidCA, cert.Subject.CommonName)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		// Never echo key material, not even its first bytes.
		return nil, nil, fmt.Errorf("%w: key is not a PKCS#8 PEM block", ErrInvalidCA)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: key is not a valid PKCS#8 key", ErrInvalidCA)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: key is not an ECDSA key", ErrInvalidCA)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: key does not match certificate %q", ErrInvalidCA, cert.Subject.CommonName)
	}
	return cert, key, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("devpki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// newSerial returns a random positive 128-bit serial (RFC 5280 allows up to
// 20 octets; randomness keeps serials unique without state).
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("devpki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}
