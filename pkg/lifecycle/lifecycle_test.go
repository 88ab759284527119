package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/pkg/lifecycle"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// untilStopped is a well-behaved task that records when it returned.
func untilStopped(name string, returned *atomic.Bool, linger time.Duration) lifecycle.Task {
	return lifecycle.Task{Name: name, Run: func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(linger)
		returned.Store(true)
		return ctx.Err() // cancellation is not a failure
	}}
}

func TestRun(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		failing lifecycle.Task // nil Run: none; the service is stopped by its context
		wantErr error
		wantMsg string
	}{
		{name: "a stop by the context returns nil after every task returned"},
		{name: "a failing task stops the others and names itself",
			failing: lifecycle.Task{Name: "grpc", Run: func(context.Context) error { return boom }},
			wantErr: boom, wantMsg: "grpc: boom"},
		{name: "a task that ends early without an error is a failure too",
			failing: lifecycle.Task{Name: "watch", Run: func(context.Context) error { return nil }},
			wantErr: lifecycle.ErrEnded, wantMsg: "watch: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a, b atomic.Bool
			tasks := []lifecycle.Task{untilStopped("a", &a, 0), untilStopped("b", &b, 50*time.Millisecond)}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.failing.Run != nil {
				tasks = append(tasks, tc.failing)
			} else {
				time.AfterFunc(10*time.Millisecond, cancel)
			}
			done := make(chan error, 1)
			go func() { done <- lifecycle.Run(ctx, tasks...) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) || !strings.HasPrefix(errString(err), tc.wantMsg) {
				t.Fatalf("Run = %v, want %v (%q)", err, tc.wantErr, tc.wantMsg)
			}
			if !a.Load() || !b.Load() {
				t.Fatal("Run returned before every task had returned")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRunReportsTheFirstCauseNotTheFallout(t *testing.T) {
	cause := errors.New("listener closed")
	err := lifecycle.Run(context.Background(),
		lifecycle.Task{Name: "http", Run: func(context.Context) error { return cause }},
		lifecycle.Task{Name: "follower", Run: func(ctx context.Context) error {
			<-ctx.Done()
			return errors.New("stopped because http failed")
		}},
	)
	if !errors.Is(err, cause) {
		t.Fatalf("Run = %v, want the first failure", err)
	}
}

func TestHTTPTaskDrainsRequestsThenStops(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inHandler := make(chan struct{})
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(inHandler)
		<-release
		_, _ = io.WriteString(w, "done")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.Run(ctx, lifecycle.HTTP("http", srv, lis, 5*time.Second)) }()

	body := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + lis.Addr().String())
		if err != nil {
			body <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body <- string(b)
	}()
	<-inHandler
	cancel()
	select {
	case err := <-done:
		t.Fatalf("stopped (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if got := <-body; got != "done" {
		t.Fatalf("in-flight request got %q, want it finished", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after a clean stop", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestOnStopRunsAtTheStop(t *testing.T) {
	var called atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if err := lifecycle.Run(ctx, lifecycle.OnStop("health", func() { called.Store(true) })); err != nil || !called.Load() {
		t.Fatalf("Run = %v, called %v", err, called.Load())
	}
}
