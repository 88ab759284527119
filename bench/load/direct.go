package load

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Direct streams chat completions from an OpenAI-compatible endpoint over
// HTTP SSE (the stub model itself, or a plain reverse proxy in front of
// it): the baselines the gateway is compared with. It decodes every chunk
// as a real client does (encoding/json into the chunk's fields), so that
// the client's cost is the same whatever it talks to.
type Direct struct {
	// Client must pool at least as many connections per host as there are
	// workers, so that the baseline does not pay for reconnects.
	Client *http.Client
	// URL is the chat completions endpoint (…/v1/chat/completions).
	URL string
	// Body is the request (default: a streamed chat completion of one
	// short message for the stub's model); the suite sends the body the
	// gateway sends, so the model does the same work for every path.
	// Header is added to each request (the gateway's HTTP API takes the
	// token as Authorization).
	Body   []byte
	Header http.Header
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ Target = (*Direct)(nil)

// requestBody is the default request: a streamed chat completion of one
// short message.
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
			text, end, derr := DecodeSSELine(line)
			switch {
			case derr != nil:
				s.Err = derr
			case end:
				done = true
			case text != "":
				if s.Chunks == 0 {
					s.TTFT = now().Sub(start)
				}
				s.Chunks++
			}
			if derr != nil {
				break
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

// chunk is what an OpenAI client reads from each streamed chunk.
type chunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

var (
	dataPrefix = []byte("data:")
	doneMarker = []byte("[DONE]")
)

// DecodeSSELine decodes one line of an OpenAI-style SSE stream the way a
// client library does: a `data:` line's JSON is decoded with encoding/json
// and the text of choice 0 returned; end is true for `data: [DONE]`. Other
// lines (blank, comments, event names) yield nothing. A chunk that is not
// valid JSON, or carries an error, is an error.
func DecodeSSELine(line []byte) (text string, end bool, err error) {
	rest, ok := bytes.CutPrefix(line, dataPrefix)
	if !ok {
		return "", false, nil
	}
	rest = bytes.TrimSpace(rest)
	if bytes.Equal(rest, doneMarker) {
		return "", true, nil
	}
	var c chunk
	if err := json.Unmarshal(rest, &c); err != nil {
		return "", false, fmt.Errorf("load: invalid chunk: %w", err)
	}
	if len(c.Error) > 0 && string(c.Error) != "null" {
		return "", false, fmt.Errorf("load: error in stream: %s", c.Error)
	}
	for _, ch := range c.Choices {
		if ch.Index == 0 {
			return ch.Delta.Content + ch.Text, false, nil
		}
	}
	return "", false, nil
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
