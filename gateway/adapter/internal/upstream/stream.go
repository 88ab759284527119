package upstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/sse"
)

// Truncated is the error for a body that ended before the provider's
// completion marker ([DONE], message_stop, done:true, final details).
func Truncated() *adapter.Error {
	return &adapter.Error{Kind: adapter.KindMalformed, Message: "stream ended before completion", Retryable: true}
}

// Malformed reports a frame the adapter could not parse. The cause is kept
// for logs but never shown: it may quote upstream bytes.
func Malformed(what string, err error) *adapter.Error {
	return &adapter.Error{Kind: adapter.KindMalformed, Message: "malformed stream: " + what, Err: err}
}

// Body is a streaming response body that classifies its own read failures
// and in-stream errors; *Response is the production one.
type Body interface {
	io.Reader
	// Fail classifies err (see Response.Fail).
	Fail(err error) error
	// StreamError builds the error for an in-stream error frame with the
	// call's API key scrubbed (see Response.StreamError).
	StreamError(data []byte) *adapter.Error
}

// DecodeError classifies an error from an sse.Decoder or sse.LineReader
// reading a Response: truncation and oversize events become KindMalformed,
// a clean EOF before the completion marker is truncation, and errors from
// Response.Read pass through.
func DecodeError(r Body, err error, maxEvent int) error {
	switch {
	case errors.Is(err, sse.ErrTruncated), err == io.EOF:
		return Truncated()
	case errors.Is(err, sse.ErrTooLarge):
		return &adapter.Error{Kind: adapter.KindMalformed, Message: fmt.Sprintf("stream event exceeds %d bytes", maxEvent), Err: err}
	}
	return r.Fail(err)
}

// NextData returns the data of the next SSE event that carries any (events
// with empty or blank data are keep-alives and skipped), trimmed of
// surrounding white space. Decoder failures become adapter errors as in
// DecodeError; an `event: error` frame or llama.cpp's `error:` field line is
// r.StreamError (the key scrubbed from its message). The returned slice is
// valid until the next call.
func NextData(dec *sse.Decoder, r Body, maxEvent int) ([]byte, error) {
	for {
		ev, err := dec.Next()
		if err != nil {
			return nil, DecodeError(r, err, maxEvent)
		}
		if ev.Error || string(ev.Name) == "error" {
			return nil, r.StreamError(ev.Data)
		}
		if data := bytes.TrimSpace(ev.Data); len(data) > 0 {
			return data, nil
		}
	}
}
