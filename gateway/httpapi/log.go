package httpapi

import (
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// zerologStd routes net/http's own messages (TLS handshake failures,
// malformed requests) to the gateway's logger at debug level: they are the
// peer's problem and would otherwise flood stderr.
func zerologStd(l zerolog.Logger) *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		l.Debug().Str("component", "httpapi").Msg(strings.TrimSpace(string(p)))
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
