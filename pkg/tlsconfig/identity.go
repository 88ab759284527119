package tlsconfig

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerIdentity returns the identity of the gRPC caller in ctx as proven by
// its client certificate: the first URI SAN (devpki issues
// spiffe://airlock/<name>) or, without one, the subject common name. It
// reports false unless the connection is TLS and the certificate was
// verified against the server's client CAs (mutual TLS); a certificate that
// was merely presented never counts.
func PeerIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", false
	}
	return CertificateIdentity(chains[0][0])
}

// CertificateIdentity returns cert's first URI SAN or, without one, its
// subject common name; false if it has neither. It does not verify cert:
// callers pass only certificates from a verified chain.
func CertificateIdentity(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	if len(cert.URIs) > 0 && cert.URIs[0] != nil {
		return cert.URIs[0].String(), true
	}
	if cn := cert.Subject.CommonName; cn != "" {
		return cn, true
	}
	return "", false
}
