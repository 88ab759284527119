// Package sse decodes streaming response bodies from model servers: the
// WHATWG server-sent-events format (Decoder) and newline-delimited JSON
// (LineReader).
//
// Both are on the gateway's hot path: they read through a single reusable
// buffer, return slices that alias it, and allocate nothing per event in
// steady state. Both bound the size of one event or line while reading, so
// memory never grows past that bound whatever the peer sends, and both tell a
// clean end of input (io.EOF) from a body cut inside an event (ErrTruncated).
package sse

import (
	"bytes"
	"io"
)

// Event is one dispatched server-sent event. Its slices alias the decoder's
// buffers and are valid only until the next call to Next.
type Event struct {
	// Name is the value of the last `event:` field, empty for the default
	// "message" type.
	Name []byte
	// Data is the value of the event's `data:` lines joined with "\n". For
	// an error event (Error true) it is the value of the `error:` line.
	Data []byte
	// Error is set when the event carried a non-standard `error:` field
	// line, as llama.cpp's server writes on failures. Strict SSE parsers
	// ignore that field; a gateway must not.
	Error bool
}

// Decoder reads server-sent events.
type Decoder struct {
	lr      lineReader
	name    []byte
	data    []byte
	errData []byte
	hasData bool
	hasErr  bool
	pending bool // some field seen since the last dispatch
	started bool
}

// NewDecoder returns a Decoder reading r that rejects any event whose data
// (or any single line) exceeds max bytes (DefaultMaxEventBytes if max <= 0).
func NewDecoder(r io.Reader, max int) *Decoder {
	return &Decoder{lr: newLineReader(r, max, true)}
}

var bom = []byte("\xEF\xBB\xBF")

// Next returns the next event. Lines may end in \r\n, \n or \r; comment
// lines (starting with ':') and `id:`/`retry:` fields are skipped; a field's
// value loses at most one leading space; a blank line dispatches the event
// if it had a data or error field. At the end of input Next returns io.EOF,
// or ErrTruncated if an event was left unterminated (its fields are
// discarded, never dispatched). It returns ErrTooLarge when an event exceeds
// the bound, and read errors unchanged.
func (d *Decoder) Next() (Event, error) {
	for {
		line, err := d.lr.next()
		if err != nil {
			if err == io.EOF && d.pending {
				d.reset()
				return Event{}, ErrTruncated
			}
			return Event{}, err
		}
		if !d.started {
			d.started = true
			line = bytes.TrimPrefix(line, bom)
		}
		if len(line) == 0 {
			if d.hasData || d.hasErr {
				ev := Event{Name: d.name, Data: d.data, Error: d.hasErr}
				if d.hasErr {
					ev.Data = d.errData
				}
				d.reset()
				return ev, nil
			}
			d.reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			d.pending = true
			if d.hasData {
				if len(d.data)+1+len(value) > d.lr.max {
					return Event{}, ErrTooLarge
				}
				d.data = append(d.data, '\n')
			}
			d.data = append(d.data, value...)
			d.hasData = true
		case "event":
			d.pending = true
			d.name = append(d.name[:0], value...)
		case "error":
			d.pending = true
			d.errData = append(d.errData[:0], value...)
			d.hasErr = true
		case "id", "retry":
			d.pending = true
		default:
			// Unknown fields are ignored, as the WHATWG rules require.
		}
	}
}

func (d *Decoder) reset() {
	d.name = d.name[:0]
	d.data = d.data[:0]
	d.errData = d.errData[:0]
	d.hasData, d.hasErr, d.pending = false, false, false
}
