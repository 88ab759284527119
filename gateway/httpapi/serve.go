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

// ServeOptions configure Serve.
type ServeOptions struct {
	// TLS, when set, serves TLS (HTTP/2 and HTTP/1.1), with client
	// certificates required when it requires them; nil serves plaintext.
	TLS *tls.Config
	// Grace is how long running requests may finish after ctx ends.
	Grace time.Duration
	// MaxStreamsPerConn bounds concurrent HTTP/2 streams per connection
	// (as --max-streams-per-conn bounds gRPC's); 0 keeps Go's default.
	MaxStreamsPerConn int
	Logger            zerolog.Logger
}

// Serve serves h on lis until ctx ends, then shuts down: no new requests
// are accepted, running ones (streams included) get o.Grace to finish, and
// then their connections are closed, which cancels their upstream calls.
// It returns nil after a shutdown caused by ctx, else the error that
// stopped serving.
func Serve(ctx context.Context, lis net.Listener, h http.Handler, o ServeOptions) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second, // the body has its own bound (ReadBody); no WriteTimeout: answers stream
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zerologStd(o.Logger),
	}
	if o.MaxStreamsPerConn > 0 {
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: o.MaxStreamsPerConn}
	}
	tlsConf, grace := o.TLS, o.Grace
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
