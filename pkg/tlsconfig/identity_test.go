package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// startGRPC serves the health service on loopback with creds and records
// PeerIdentity for every call.
func startGRPC(t *testing.T, creds credentials.TransportCredentials) (addr string, seen chan [2]any) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen = make(chan [2]any, 1)
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, ok := PeerIdentity(ctx)
			seen <- [2]any{id, ok}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), seen
}

func TestPeerIdentityOverGRPC(t *testing.T) {
	p := newPKI(t)
	mtls, err := Server(p.serverCert, p.serverKey, p.caCert)
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := Server(p.serverCert, p.serverKey, "")
	if err != nil {
		t.Fatal(err)
	}
	withCert, err := Client(p.caCert, p.clientCert, p.clientKey, "issuer")
	if err != nil {
		t.Fatal(err)
	}
	// A client certificate offered to a server that does not verify client
	// certificates proves nothing, so it must not become an identity.
	noVerify := serverOnly.Clone()
	noVerify.ClientAuth = tls.RequestClientCert

	tests := []struct {
		name   string
		server credentials.TransportCredentials
		client credentials.TransportCredentials
		wantID string
		wantOK bool
	}{
		{"mutual TLS yields the URI SAN", credentials.NewTLS(mtls), credentials.NewTLS(withCert), "spiffe://airlock/gateway", true},
		{"server-only TLS yields no identity", credentials.NewTLS(serverOnly), credentials.NewTLS(withCert), "", false},
		{"unverified client certificate yields no identity", credentials.NewTLS(noVerify), credentials.NewTLS(withCert), "", false},
		{"plaintext yields no identity", insecure.NewCredentials(), insecure.NewCredentials(), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := startGRPC(t, tt.server)
			cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tt.client))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("Check: %v", err)
			}
			got := <-seen
			if got[0] != tt.wantID || got[1] != tt.wantOK {
				t.Errorf("PeerIdentity = %q, %v; want %q, %v", got[0], got[1], tt.wantID, tt.wantOK)
			}
		})
	}
}

func TestPeerIdentityWithoutPeer(t *testing.T) {
	if id, ok := PeerIdentity(context.Background()); ok || id != "" {
		t.Errorf("PeerIdentity(no peer) = %q, %v", id, ok)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})
	if id, ok := PeerIdentity(ctx); ok || id != "" {
		t.Errorf("PeerIdentity(TLS without verified chains) = %q, %v", id, ok)
	}
}

func TestCertificateIdentity(t *testing.T) {
	u, _ := url.Parse("spiffe://airlock/issuer")
	tests := []struct {
		name   string
		cert   *x509.Certificate
		wantID string
		wantOK bool
	}{
		{"URI SAN wins over CN", &x509.Certificate{URIs: []*url.URL{u}, Subject: pkix.Name{CommonName: "cn"}}, "spiffe://airlock/issuer", true},
		{"CN when no URI SAN", &x509.Certificate{Subject: pkix.Name{CommonName: "legacy-tool"}}, "legacy-tool", true},
		{"neither", &x509.Certificate{}, "", false},
		{"nil certificate", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := CertificateIdentity(tt.cert)
			if id != tt.wantID || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", id, ok, tt.wantID, tt.wantOK)
			}
		})
	}
}
