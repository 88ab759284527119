package rpcserver

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Keepalive, agreed by both sides. A server sends GOAWAY (too_many_pings)
// and drops every stream of a client that pings more often than it allows,
// so clients must never ping more often than MinPingInterval; any other
// gRPC client of Airlock should keep to the same bound.
const (
	// MinPingInterval is the shortest ping interval servers accept, with or
	// without open streams.
	MinPingInterval = 10 * time.Second
	// ClientPingInterval is how often Airlock's clients ping an idle
	// connection (at least MinPingInterval), so a dead peer behind a NAT or
	// load balancer is noticed within ClientPingInterval + ClientPingTimeout.
	ClientPingInterval = 30 * time.Second
	// ClientPingTimeout is how long a client waits for a ping's answer.
	ClientPingTimeout = 10 * time.Second
)

// KeepaliveServerOptions are the keepalive settings of every Airlock gRPC
// server: accept client pings down to MinPingInterval (also on idle
// connections, which watch clients keep), and ping idle clients every two
// minutes.
func KeepaliveServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
}

// KeepaliveDialOption is the keepalive setting of Airlock's own clients
// (the gateway's connection to the issuer): it agrees with
// KeepaliveServerOptions.
func KeepaliveDialOption() grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ClientPingInterval, Timeout: ClientPingTimeout, PermitWithoutStream: true})
}
