package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Serve serves h on lis until ctx ends, then shuts down: no new requests
// are accepted, running ones (streams included) get grace to finish, and
// then their connections are closed, which cancels their upstream calls.
// tlsConf nil serves plaintext; otherwise TLS (HTTP/2 and HTTP/1.1), with
// client certificates required when tlsConf requires them. It returns nil
// after a shutdown caused by ctx, else the error that stopped serving.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, tlsConf *tls.Config, grace time.Duration, log zerolog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second, // the body has its own bound (ReadBody); no WriteTimeout: answers stream
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zerologStd(log),
	}
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			srv.TLSConfig = tlsConf.Clone()
			errc <- srv.ServeTLS(lis, "", "")
			return
		}
		errc <- srv.Serve(lis)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
