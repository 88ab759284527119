package client

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// IssuerServiceConfig is the gRPC service config Airlock's clients use for
// the issuer: round robin over every address the target resolves to (several
// replicas), and up to 4 attempts, on Unavailable only, of the calls that
// are safe to repeat: reads, watches (retried until their first message;
// after that the caller's follow loop re-establishes them), RevokeToken (a
// second revocation of one token returns the first) and MintToken (a
// duplicate mint is harmless: the extra token simply expires). RotateKeys
// and every other write are not retried: they are not idempotent.
//
// Other gRPC clients of the issuer (the Python helper, grpcurl scripts)
// should use the same config.
const IssuerServiceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [
      {"service": "airlock.issuer.v1.KeyService", "method": "GetKeys"},
      {"service": "airlock.issuer.v1.KeyService", "method": "WatchKeys"},
      {"service": "airlock.issuer.v1.ModelService", "method": "GetModel"},
      {"service": "airlock.issuer.v1.ModelService", "method": "ListModels"},
      {"service": "airlock.issuer.v1.ModelService", "method": "ListFeatureSettings"},
      {"service": "airlock.issuer.v1.ModelService", "method": "WatchModels"},
      {"service": "airlock.issuer.v1.TokenService", "method": "MintToken"},
      {"service": "airlock.issuer.v1.TokenService", "method": "RevokeToken"},
      {"service": "airlock.issuer.v1.TokenService", "method": "WatchRevocations"},
      {"service": "airlock.issuer.v1.UserService", "method": "ListUsers"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// listScheme is the resolver scheme of an address list; each list gets a
// resolver of its own.
var listSeq atomic.Uint64

// IssuerTarget returns the gRPC target and dial options that reach the
// issuer at addr, which is one of:
//
//   - "host:port": one address (resolved as gRPC resolves a plain target);
//   - "host1:port,host2:port,...": several replicas, round robin;
//   - "dns:///name:port": every address DNS returns for name, round robin
//     (gRPC's DNS resolver re-resolves when a connection is lost).
//
// The options carry IssuerServiceConfig. Each host of a list is also the
// TLS server name of its connection. An empty entry or one without a port
// is an error.
func IssuerTarget(addr string) (string, []grpc.DialOption, error) {
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(IssuerServiceConfig)}
	if !strings.Contains(addr, ",") {
		return addr, opts, nil
	}
	var addrs []resolver.Address
	for _, a := range strings.Split(addr, ",") {
		a = strings.TrimSpace(a)
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return "", nil, fmt.Errorf("issuer address %q: %w", a, err)
		}
		addrs = append(addrs, resolver.Address{Addr: a, ServerName: host})
	}
	scheme := fmt.Sprintf("airlock-issuers-%d", listSeq.Add(1))
	r := manual.NewBuilderWithScheme(scheme)
	r.InitialState(resolver.State{Addresses: addrs})
	return scheme + ":///issuers", append(opts, grpc.WithResolvers(r)), nil
}
