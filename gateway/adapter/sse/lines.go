package sse

import (
	"bytes"
	"errors"
	"io"
)

// ErrTruncated reports that the body ended inside an event or line: the
// unterminated remainder was discarded, never parsed. For a model stream it
// means the connection dropped before the server finished.
var ErrTruncated = errors.New("stream ended inside an unterminated event")

// ErrTooLarge reports that one event (SSE) or line (NDJSON) exceeded the
// configured maximum. The decoder stops there; it never buffers more than
// the maximum plus a small constant.
var ErrTooLarge = errors.New("event exceeds the maximum size")

// DefaultMaxEventBytes is the bound used when a caller passes max <= 0.
const DefaultMaxEventBytes = 1 << 20

// initialBuf is small because it is held per open stream and SSE lines are
// short (an OpenAI-compatible chunk is a few hundred bytes); it doubles on
// demand up to the maximum, so a longer line costs one growth. Reads go
// through the upstream connection's own buffer (egress.ReadBufferSize), so
// this size does not set how many bytes one read system call takes.
const initialBuf = 512

// lineReader splits a byte stream into lines without copying: each returned
// line aliases the internal buffer and is valid until the next call. The
// buffer grows on demand but never past max+2 bytes, so a peer sending one
// endless line costs bounded memory.
type lineReader struct {
	r   io.Reader
	buf []byte
	beg int // start of unread data
	end int // end of buffered data
	max int

	// anyEOL accepts \r and \r\n as terminators as well as \n (SSE);
	// otherwise only \n ends a line (NDJSON).
	anyEOL bool
	// skipLF is set after a line ended in a lone \r at the end of the
	// buffer: a \n arriving in the next read belongs to that terminator.
	skipLF bool
	err    error // sticky read error, reported once buffered data is used up
}

func newLineReader(r io.Reader, max int, anyEOL bool) lineReader {
	if max <= 0 {
		max = DefaultMaxEventBytes
	}
	return lineReader{r: r, max: max, anyEOL: anyEOL}
}

// next returns the next complete line without its terminator. At the end of
// input it returns io.EOF if nothing is pending, or ErrTruncated if a
// partial line was left (it is discarded). Read errors other than io.EOF are
// returned unchanged once the buffered lines are consumed.
func (l *lineReader) next() ([]byte, error) {
	for {
		if l.skipLF && l.beg < l.end {
			if l.buf[l.beg] == '\n' {
				l.beg++
			}
			l.skipLF = false
		}
		if line, ok := l.scan(); ok {
			return line, nil
		}
		if l.err != nil {
			if l.err == io.EOF && l.beg < l.end {
				l.beg = l.end
				return nil, ErrTruncated
			}
			return nil, l.err
		}
		if l.end-l.beg > l.max {
			return nil, ErrTooLarge
		}
		l.fill()
	}
}

// firstCR returns the index of the first '\r' before lf (the first '\n',
// or -1 for none), else lf: the first of either byte. Two vectorised
// IndexByte passes beat IndexAny's byte-at-a-time loop on the long data
// lines of a model's stream.
func firstCR(data []byte, lf int) int {
	head := data
	if lf >= 0 {
		head = data[:lf]
	}
	if cr := bytes.IndexByte(head, '\r'); cr >= 0 {
		return cr
	}
	return lf
}

// scan looks for a terminator in the buffered bytes.
func (l *lineReader) scan() ([]byte, bool) {
	data := l.buf[l.beg:l.end]
	i := bytes.IndexByte(data, '\n')
	if l.anyEOL {
		i = firstCR(data, i)
	}
	if i < 0 {
		return nil, false
	}
	if i > l.max {
		// The line is complete but already over the bound.
		l.err = ErrTooLarge
		return nil, false
	}
	line := data[:i]
	adv := i + 1
	if data[i] == '\r' {
		if i+1 < len(data) {
			if data[i+1] == '\n' {
				adv++
			}
		} else {
			l.skipLF = true
		}
	} else if !l.anyEOL && i > 0 && data[i-1] == '\r' {
		line = data[:i-1] // NDJSON written with \r\n
	}
	l.beg += adv
	return line, true
}

// fill reads more input, compacting or growing the buffer first.
func (l *lineReader) fill() {
	if l.beg > 0 && l.beg == l.end {
		l.beg, l.end = 0, 0
	}
	if l.end == len(l.buf) {
		if l.beg > 0 {
			l.end = copy(l.buf, l.buf[l.beg:l.end])
			l.beg = 0
		} else {
			limit := l.max + 2 // the line, a terminator, and one byte to detect overflow
			n := max(2*len(l.buf), initialBuf)
			n = min(n, limit)
			if n <= len(l.buf) {
				l.err = ErrTooLarge
				return
			}
			nb := make([]byte, n)
			l.end = copy(nb, l.buf[l.beg:l.end])
			l.beg = 0
			l.buf = nb
		}
	}
	for range 100 {
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if err != nil {
			l.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	l.err = io.ErrNoProgress
}

// LineReader reads newline-delimited JSON (NDJSON): one document per
// \n-terminated line. A trailing \r is dropped; a final fragment without \n
// is incomplete and reported as ErrTruncated.
type LineReader struct {
	lr lineReader
}

// NewLineReader returns a LineReader that rejects lines longer than max bytes
// (DefaultMaxEventBytes if max <= 0) with ErrTooLarge.
func NewLineReader(r io.Reader, max int) *LineReader {
	return &LineReader{lr: newLineReader(r, max, false)}
}

// Next returns the next line without its terminator; the slice is valid
// until the following call. Blank lines are returned too (callers skip
// them). At the end it returns io.EOF, or ErrTruncated if the input ended
// with an unterminated line; read errors are returned unchanged.
func (r *LineReader) Next() ([]byte, error) { return r.lr.next() }
