package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Direct streams chat completions straight from an OpenAI-compatible server
// (the stub model) over HTTP SSE: the baseline the gateway is compared with.
type Direct struct {
	// Client must pool at least as many connections per host as there are
	// workers, so that the baseline does not pay for reconnects.
	Client *http.Client
	// URL is the chat completions endpoint (…/v1/chat/completions).
	URL string
	// Body is the request (default: a streamed chat completion of one
	// short message for the stub's model); Header is added to each request
	// (the gateway's HTTP API takes the token as Authorization).
	Body   []byte
	Header http.Header
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ Target = (*Direct)(nil)

// requestBody is what the gateway sends upstream, minus the model name's
// source: a streamed chat completion of one short message.
var requestBody = []byte(`{"model":"airlock-stub","stream":true,"messages":[{"role":"user","content":"Say hello"}]}`)

// Stream implements Target.
func (d *Direct) Stream(ctx context.Context, _ int) Stream {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	var s Stream
	body := d.Body
	if body == nil {
		body = requestBody
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		s.Err = err
		return s
	}
	for k, vs := range d.Header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := d.Client.Do(req)
	if err != nil {
		s.Err = err
		return s
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.Err = fmt.Errorf("load: direct stream: %s", resp.Status)
		return s
	}
	r := bufio.NewReaderSize(resp.Body, 4096)
	done := false
	for !done {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			switch kind := ClassifySSE(line); kind {
			case SSEText:
				if s.Chunks == 0 {
					s.TTFT = now().Sub(start)
				}
				s.Chunks++
			case SSEDone:
				done = true
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) || !done {
				s.Err = fmt.Errorf("load: direct stream ended early: %w", err)
			}
			break
		}
	}
	// Drain so the connection goes back to the pool.
	_, _ = io.Copy(io.Discard, r)
	s.Total = now().Sub(start)
	if s.Err == nil && s.Chunks == 0 {
		s.Err = errors.New("load: direct stream carried no text")
	}
	return s
}

// SSEKind classifies one line of an OpenAI-style SSE stream.
type SSEKind int

// Kinds of SSE lines.
const (
	SSEOther SSEKind = iota // blank lines, comments, chunks without text
	SSEText                 // a chunk whose delta carries non-empty content or text
	SSEDone                 // data: [DONE]
)

var (
	dataPrefix   = []byte("data:")
	doneMarker   = []byte("[DONE]")
	contentField = []byte(`"content":"`)
	textField    = []byte(`"text":"`)
)

// ClassifySSE tells text chunks apart from everything else without decoding
// the JSON, so the baseline client spends as little as it can: the direct
// figures must be the floor the gateway is compared with. It looks for a
// "content" or "text" string field with at least one character.
func ClassifySSE(line []byte) SSEKind {
	rest, ok := bytes.CutPrefix(line, dataPrefix)
	if !ok {
		return SSEOther
	}
	rest = bytes.TrimSpace(rest)
	if bytes.Equal(rest, doneMarker) {
		return SSEDone
	}
	for _, field := range [][]byte{contentField, textField} {
		if i := bytes.Index(rest, field); i >= 0 {
			if j := i + len(field); j < len(rest) && rest[j] != '"' {
				return SSEText
			}
		}
	}
	return SSEOther
}

// NewDirectClient returns an HTTP client that keeps up to conns idle
// connections to one host, for the baseline.
func NewDirectClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}
