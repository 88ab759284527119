package rpcserver

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"
)

// plaintextHintEvery bounds how often a server logs the plaintext-client
// hint: a misconfigured client reconnects with backoff, forever.
const plaintextHintEvery = 30 * time.Second

// TLSCredentials returns server transport credentials for conf that, when a
// client speaks plaintext gRPC to this TLS port (its HTTP/2 preface arrives
// where a TLS hello belongs), log a warning naming the fix, at most once
// every 30 s. The handshake fails exactly as with credentials.NewTLS; the
// client sees its own hint (pkg/client).
func TLSCredentials(conf *tls.Config, log zerolog.Logger) credentials.TransportCredentials {
	return &hintingTLS{TransportCredentials: credentials.NewTLS(conf), log: log}
}

type hintingTLS struct {
	credentials.TransportCredentials
	log zerolog.Logger

	mu   sync.Mutex
	last time.Time
}

// ServerHandshake implements credentials.TransportCredentials.
func (h *hintingTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(c)
	var rh tls.RecordHeaderError
	if err != nil && errors.As(err, &rh) && string(rh.RecordHeader[:]) == "PRI *" && h.due() {
		h.log.Warn().Str("remote", c.RemoteAddr().String()).
			Msg("a client spoke plaintext gRPC to this TLS port: it must connect with TLS (airlockctl: drop --plaintext / AIRLOCK_PLAINTEXT, give --ca)")
	}
	return conn, info, err
}

func (h *hintingTLS) due() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := time.Now(); now.Sub(h.last) >= plaintextHintEvery {
		h.last = now
		return true
	}
	return false
}

// Clone implements credentials.TransportCredentials.
func (h *hintingTLS) Clone() credentials.TransportCredentials {
	return &hintingTLS{TransportCredentials: h.TransportCredentials.Clone(), log: h.log}
}

var _ credentials.TransportCredentials = (*hintingTLS)(nil)
