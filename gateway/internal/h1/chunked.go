package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
)

// chunked reads a chunked response body (RFC 9112 §7.1) from a
// connection's buffer the way net/http's transport does (the same limits,
// and an error wherever net/http's would fail the body; the differential
// fuzz target holds it to that), and can also return just what is already
// buffered without reading the connection (readBuffered): a relay can then
// tell "more of the answer is already here" from "the next read waits on
// the model". Trailers are read and discarded.
type chunked struct {
	br       *bufio.Reader
	n        uint64 // data bytes left in the current chunk
	checkEnd bool   // the CRLF after a chunk's data comes next
	last     bool   // the last (zero-size) chunk was read; the trailer comes next
	excess   int64  // framing bytes beyond what the data justifies
	crlf     [2]byte
	err      error // sticky; io.EOF once the trailer is read
}

// Read reads body bytes, waiting on the connection only while it has none
// for p.
func (c *chunked) Read(p []byte) (int, error) { return c.read(p, true) }

// readBuffered is Read without waiting: it returns (0, nil) when nothing
// of the body is buffered. It reads an empty trailer after the last chunk
// when buffered, and leaves any other to Read.
func (c *chunked) readBuffered(p []byte) (int, error) { return c.read(p, false) }

func (c *chunked) read(p []byte, wait bool) (n int, err error) {
	for c.err == nil {
		mayWait := wait && n == 0
		switch {
		case c.last:
			if !wait {
				// Only the usual empty trailer, when it is here: a
				// relay that stops reading at the model's end marker
				// then leaves the connection reusable.
				if buf, _ := c.br.Peek(2); c.br.Buffered() < 2 || string(buf) != "\r\n" {
					return n, nil
				}
			}
			// As net/http: the trailer is read as soon as the last chunk
			// is, even when data comes back with it.
			if c.err = c.trailer(); c.err == nil {
				c.err = io.EOF
			}
		case c.checkEnd:
			if !mayWait && c.br.Buffered() < 2 {
				return n, nil
			}
			if _, err := io.ReadFull(c.br, c.crlf[:]); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				c.err = err
				break
			}
			if c.crlf != [2]byte{'\r', '\n'} {
				c.err = errors.New("malformed chunked encoding")
				break
			}
			c.checkEnd = false
		case c.n == 0:
			if !mayWait && !c.headerBuffered() {
				return n, nil
			}
			c.beginChunk()
		case n == len(p):
			return n, nil
		default:
			if !mayWait && c.br.Buffered() == 0 {
				return n, nil
			}
			rbuf := p[n:]
			if uint64(len(rbuf)) > c.n {
				rbuf = rbuf[:c.n]
			}
			// With bytes buffered, bufio returns them without reading.
			n0, err := c.br.Read(rbuf)
			n += n0
			c.n -= uint64(n0) //nolint:gosec // a Read count is never negative
			switch {
			case c.n == 0 && err == nil:
				c.checkEnd = true
			case err == io.EOF:
				err = io.ErrUnexpectedEOF
			}
			c.err = err
		}
	}
	return n, c.err
}

// headerBuffered reports whether a whole chunk-size line is buffered.
func (c *chunked) headerBuffered() bool {
	b := c.br.Buffered()
	if b == 0 {
		return false
	}
	peek, _ := c.br.Peek(b)
	return bytes.IndexByte(peek, '\n') >= 0
}

// beginChunk reads a chunk-size line, with net/http's rules and limits.
func (c *chunked) beginChunk() {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		switch err {
		case io.EOF:
			err = io.ErrUnexpectedEOF
		case bufio.ErrBufferFull:
			err = errLineTooLong
		}
		c.err = err
		return
	}
	if i := bytes.IndexByte(line, '\r'); i == -1 {
		c.err = errors.New("chunked line ends with bare LF")
		return
	} else if i != len(line)-2 {
		c.err = errors.New("invalid CR in chunked line")
		return
	}
	line = line[:len(line)-2]
	if len(line) >= maxChunkLine {
		c.err = errLineTooLong
		return
	}
	c.excess += int64(len(line)) + 2
	line = bytes.TrimRight(line, " \t")
	line, _, _ = bytes.Cut(line, []byte(";")) // extensions are ignored
	size, err := parseHex(line)
	if err != nil {
		c.err = err
		return
	}
	// As net/http: 16 bytes of framing per chunk, plus twice its data,
	// then at most 16 KiB more in all.
	// The arithmetic is net/http's, wraparound for sizes from 2^62 included,
	// so the same bodies fail (the differential fuzz holds it to that).
	c.excess = max(c.excess-16-2*int64(size), 0) //nolint:gosec // see above
	if c.excess > 16<<10 {
		c.err = errors.New("chunked encoding contains too much non-data")
		return
	}
	c.n = size
	c.last = size == 0
}

const maxChunkLine = 4096

var errLineTooLong = errors.New("header line too long")

// parseHex parses a chunk size as net/http does: up to 16 hex digits.
func parseHex(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, errors.New("empty hex number for chunk length")
	}
	var n uint64
	for i, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, errors.New("invalid byte in chunk length")
		}
		if i == 16 {
			return 0, errors.New("http chunk length too large")
		}
		n = n<<4 | uint64(b)
	}
	return n, nil
}

var errTrailerEOF = errors.New("http: unexpected EOF reading trailer")

// trailer reads the trailer section after the last chunk as net/http
// does, bounded by the buffer, and discards it.
func (c *chunked) trailer() error {
	buf, err := c.br.Peek(2)
	if bytes.Equal(buf, []byte("\r\n")) {
		_, _ = c.br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	if !upcomingDoubleCRLF(c.br) {
		return errors.New("http: suspiciously long trailer after chunked body")
	}
	if _, err := textproto.NewReader(c.br).ReadMIMEHeader(); err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	return nil
}

// upcomingDoubleCRLF reports whether the buffer (filled up to its size)
// holds the end of a header section.
func upcomingDoubleCRLF(r *bufio.Reader) bool {
	for size := 4; ; size++ {
		buf, err := r.Peek(size)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
