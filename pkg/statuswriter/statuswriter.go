// Package statuswriter records the status an http.Handler answered with,
// for metrics and access logs, without hiding the writer's other
// capabilities: Flush passes through, and http.ResponseController reaches
// the wrapped writer through Unwrap.
package statuswriter

import "net/http"

// Writer wraps an http.ResponseWriter and remembers the first status
// written.
type Writer struct {
	http.ResponseWriter
	status int
	wrote  bool
}

// New returns a Writer around w.
func New(w http.ResponseWriter) *Writer { return &Writer{ResponseWriter: w} }

// WriteHeader records code (the first one only, as net/http sends only the
// first) and passes it on.
func (s *Writer) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 before the first byte.
func (s *Writer) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Flush flushes the wrapped writer if it can.
func (s *Writer) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (s *Writer) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Wrote reports whether the handler has written a status or any byte: a
// recovered panic may still answer only if it has not.
func (s *Writer) Wrote() bool { return s.wrote }

// Code is the status answered: the first one written, 200 if the handler
// wrote nothing (net/http then sends 200).
func (s *Writer) Code() int {
	if !s.wrote {
		return http.StatusOK
	}
	return s.status
}
