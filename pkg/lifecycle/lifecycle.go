// Package lifecycle runs a service's long-lived tasks (servers, watch
// loops, tickers) as one unit: when one task ends, every other is
// cancelled, and Run returns only once every task has returned, so nothing
// a service started outlives it.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ErrEnded is returned (wrapped with the task's name) by Run when a task
// returned nil before it was asked to stop: a service missing one of its
// tasks is not whole, so Run stops the rest.
var ErrEnded = errors.New("ended before the service was stopped")

// Task is one long-lived part of a service.
type Task struct {
	// Name prefixes the task's error ("grpc", "http", "keys").
	Name string
	// Run works until ctx is done, then returns promptly: nil after a stop
	// caused by ctx, an error when it cannot go on.
	Run func(ctx context.Context) error
}

// Run runs tasks concurrently until ctx is done or one of them returns,
// then cancels the others and waits for every task to return. It returns
// the first task's error (prefixed with its name), ErrEnded if that task
// returned nil early, or nil after a stop caused by ctx. Errors a task
// returns only because it was cancelled (context.Canceled) are not failures.
func Run(ctx context.Context, tasks ...Task) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			err := t.Run(ctx)
			switch {
			case err == nil && ctx.Err() == nil:
				err = ErrEnded
			case ctx.Err() != nil && errors.Is(err, context.Canceled):
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("%s: %w", t.Name, err)
			}
			// Send before cancelling, so the first cause is received first.
			errc <- err
			cancel()
		}()
	}
	var first error
	for range tasks {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// HTTP returns a task serving srv on lis until ctx is done, then shutting
// it down gracefully: open requests get up to grace, then every connection
// is closed. lis is closed when the task returns.
func HTTP(name string, srv *http.Server, lis net.Listener, grace time.Duration) Task {
	return Task{Name: name, Run: func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(lis) }()
		select {
		case err := <-errc:
			return err // never http.ErrServerClosed: only Shutdown below closes it
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}}
}

// OnStop returns a task that waits for the stop and then calls f (flip
// health to NOT_SERVING, end long-lived streams).
func OnStop(name string, f func()) Task {
	return Task{Name: name, Run: func(ctx context.Context) error {
		<-ctx.Done()
		f()
		return nil
	}}
}
