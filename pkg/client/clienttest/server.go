// Package clienttest provides in-process fakes of the issuer's TokenService
// and the gateway's CompletionService, and a gRPC server to run them on
// (bufconn or a loopback port, plaintext or TLS), for tests of tools built on
// package client. The fakes follow the real services' contract for the
// parts a client sees (metadata, codes, messages) but mint unsigned
// tokens that only the fake gateway accepts.
package clienttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// Option configures NewServer.
type Option func(*config)

type config struct {
	tls bool
	tcp bool
}

// WithTLS serves TLS with a fresh self-signed certificate for "localhost",
// 127.0.0.1 and ::1; CACertPEM returns it for clients to trust.
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithTCP listens on 127.0.0.1 on a free port instead of an in-memory
// bufconn listener, for clients that dial an address (airlockctl).
func WithTCP() Option { return func(c *config) { c.tcp = true } }

// Server is a running in-process gRPC server.
type Server struct {
	srv    *grpc.Server
	lis    net.Listener
	buf    *bufconn.Listener
	caPEM  []byte
	creds  credentials.TransportCredentials
	served chan struct{}
}

// NewServer starts a gRPC server with the services register adds. Close
// stops it.
func NewServer(register func(grpc.ServiceRegistrar), opts ...Option) (*Server, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	s := &Server{creds: insecure.NewCredentials(), served: make(chan struct{})}
	var sopts []grpc.ServerOption
	if c.tls {
		cert, caPEM, err := selfSigned()
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		s.caPEM = caPEM
		s.creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	}
	if c.tcp {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("clienttest: listen: %w", err)
		}
		s.lis = lis
	} else {
		s.buf = bufconn.Listen(1 << 20)
		s.lis = s.buf
	}
	s.srv = grpc.NewServer(sopts...)
	register(s.srv)
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(s.lis)
	}()
	return s, nil
}

// Addr returns the address to dial: host:port with WithTCP, else a
// passthrough target that only Dial can reach.
func (s *Server) Addr() string {
	if s.buf != nil {
		return "passthrough:///bufconn"
	}
	return s.lis.Addr().String()
}

// CACertPEM returns the PEM certificate to trust with WithTLS, else nil.
func (s *Server) CACertPEM() []byte { return s.caPEM }

// TransportCredentials returns client transport credentials matching the
// server: TLS trusting its certificate, or insecure.
func (s *Server) TransportCredentials() credentials.TransportCredentials { return s.creds }

// Dial connects to the server with its transport credentials and opts.
func (s *Server) Dial(opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	all := []grpc.DialOption{grpc.WithTransportCredentials(s.creds)}
	if s.buf != nil {
		all = append(all, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.buf.DialContext(ctx)
		}))
	}
	return grpc.NewClient(s.Addr(), append(all, opts...)...)
}

// Close stops the server at once and waits for it to exit.
func (s *Server) Close() {
	s.srv.Stop()
	<-s.served
}

// selfSigned makes an ECDSA P-256 certificate valid for an hour for the
// loopback names.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "clienttest"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
