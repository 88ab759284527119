package httpapi

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Stream writes a streamed answer: each Write is flushed whole, so a client
// that splits on its own framing (a newline, an SSE blank line) never sees
// half a unit. Writes come from the completion core's relay goroutine while
// streaming (completion.Service.ServeStream's send), then from the handler;
// the mutex orders them and lets the handler take the stream over when the
// relay may still be stuck on a client that stopped reading.
type Stream struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	header func(http.Header)

	mu      sync.Mutex
	started bool // status and headers are written
	closed  bool // nothing more may be written
}

// ErrStreamClosed is returned by Write after the stream was ended.
var ErrStreamClosed = errors.New("stream closed")

// streamErrorWriteTimeout bounds writing the last unit after a failure.
const streamErrorWriteTimeout = 5 * time.Second

// NewStream returns a stream on w whose first Write sends status 200 with
// the headers header sets (the content type at least), plus
// Cache-Control: no-cache and X-Accel-Buffering: no (proxies must not hold
// units back).
func NewStream(w http.ResponseWriter, header func(http.Header)) *Stream {
	return &Stream{w: w, rc: http.NewResponseController(w), header: header}
}

// Write sends b and flushes it. It returns ErrStreamClosed after the stream
// ended, or the connection's write error (which also ends the stream).
func (s *Stream) Write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStreamClosed
	}
	return s.writeLocked(b)
}

func (s *Stream) writeLocked(b []byte) error {
	if !s.started {
		h := s.w.Header()
		s.header(h)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
	}
	if len(b) == 0 {
		return s.flushLocked()
	}
	if _, err := s.w.Write(b); err != nil {
		s.closed = true
		return err
	}
	return s.flushLocked()
}

func (s *Stream) flushLocked() error {
	if err := s.rc.Flush(); err != nil {
		s.closed = true
		return err
	}
	return nil
}

// Fail ends the stream after the core returned an error. If the relay may
// still be writing (the client went away or stopped reading), its write is
// made to fail and nothing more is written. Otherwise answer runs with the
// stream held and is told whether the headers were already sent: before,
// it answers with an error status on w; after, it may write one last unit
// with write (bounded in time) and the stream then ends.
func (s *Stream) Fail(ctx context.Context, answer func(started bool, write func([]byte) error)) {
	if ctx.Err() != nil || !s.mu.TryLock() {
		_ = s.rc.SetWriteDeadline(time.Now())
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		return
	}
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.started {
		_ = s.rc.SetWriteDeadline(time.Now().Add(streamErrorWriteTimeout))
	}
	answer(s.started, s.writeLocked)
}
