// Package upstream is the HTTP plumbing every model adapter shares: it sends
// one request to a model server with the configured timeouts and body bound,
// attaches the model's API key the way the provider wants it (Credential),
// turns every failure into an *adapter.Error (or the caller's context error),
// and makes upstream messages safe to show (Scrub). Adapters hand the key to
// Start and never touch it again: the client writes the header and scrubs
// the key from every error the call returns, in-stream ones included
// (Response.StreamError).
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/pkg/bearer"
)

// Defaults for the bounds in adapter.Config.
const (
	DefaultMaxEventBytes = 1 << 20
	DefaultMaxBodyBytes  = 64 << 20
)

// Timeout names reported in adapter.Error.Timeout.
const (
	TimeoutConnect   = "connect"
	TimeoutFirstByte = "first_byte"
	TimeoutIdle      = "idle"
	TimeoutTotal     = "total"
)

// timeoutCause marks which of our own deadlines cancelled a call.
type timeoutCause struct{ name string }

func (t *timeoutCause) Error() string { return t.name + " timeout" }

var (
	causeFirstByte = &timeoutCause{TimeoutFirstByte}
	causeIdle      = &timeoutCause{TimeoutIdle}
	causeTotal     = &timeoutCause{TimeoutTotal}
	errCauseDone   = errors.New("upstream call finished")
)

// Credential is how a provider's API takes the model's API key: the header
// that carries it and what precedes the key in that header's value.
type Credential struct {
	Header string // e.g. "Authorization", "X-Api-Key", "Api-Key"
	Prefix string // e.g. "Bearer "; empty sends the key alone
}

// BearerKey is `Authorization: Bearer <key>` (OpenAI-compatible servers, TGI,
// the proxies in front of Ollama).
var BearerKey = Credential{Header: "Authorization", Prefix: bearer.Scheme + " "}

// HeaderKey is `<name>: <key>`, the key alone in a provider's own header.
func HeaderKey(name string) Credential { return Credential{Header: name} }

// Client sends requests to model servers. It is safe for concurrent use.
type Client struct {
	cred     Credential
	rt       http.RoundTripper
	timeouts adapter.Timeouts
	maxBody  int64
	maxEvent int
	now      func() time.Time
}

// New returns a Client for cfg that sends each request's API key as cred
// says, filling in default bounds. A nil Transport means
// http.DefaultTransport (tests and tools only: the gateway always passes
// its egress-guarded transport). A cred without a Header never sends the
// key.
func New(cfg adapter.Config, cred Credential) *Client {
	c := &Client{cred: cred, rt: cfg.Transport, timeouts: cfg.Timeouts, maxBody: cfg.MaxBodyBytes, maxEvent: cfg.MaxEventBytes, now: time.Now}
	if c.rt == nil {
		c.rt = http.DefaultTransport
	}
	if c.maxBody <= 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	if c.maxEvent <= 0 {
		c.maxEvent = DefaultMaxEventBytes
	}
	return c
}

// WithClock returns a copy of c that reads the time from now (for
// HTTP-date Retry-After values).
func (c *Client) WithClock(now func() time.Time) *Client {
	cp := *c
	cp.now = now
	return &cp
}

// MaxEventBytes is the bound for one SSE event or NDJSON line.
func (c *Client) MaxEventBytes() int { return c.maxEvent }

// Request is one call to a model server.
type Request struct {
	URL    string
	Header http.Header // sent as is, except the Credential header, which Start sets
	Body   []byte      // JSON, sent with POST
	// APIKey is the model's configured key (empty: none). Start sends it in
	// the client's Credential header and scrubs it from every message the
	// call returns.
	APIKey string
}

// Start sends r and returns the streaming body once a 2xx response's headers
// have arrived. Failures are *adapter.Error: a non-2xx status (classified by
// HTTPError), a connection failure (KindUnavailable, or KindTimeout
// "connect" for a dial timeout) or an expired first-byte (the timeout, or
// the call's adapter.FirstByteDeadline) or total timeout;
// if ctx ends first, ctx.Err() is returned instead.
func (c *Client) Start(ctx context.Context, r Request) (*Response, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	resp := &Response{parent: ctx, ctx: cctx, cancel: cancel, max: c.maxBody, secret: r.APIKey, idleDur: c.timeouts.Idle}
	if d := c.timeouts.Total; d > 0 {
		resp.total = time.AfterFunc(d, func() { cancel(causeTotal) })
	}
	var fb *time.Timer
	if d, ok := c.firstByte(ctx); ok {
		if d <= 0 {
			// The call's budget is spent (earlier attempts used it).
			resp.stop()
			return nil, &adapter.Error{Kind: adapter.KindTimeout, Timeout: TimeoutFirstByte, Retryable: true,
				Message: "model server " + TimeoutFirstByte + " timeout expired"}
		}
		fb = time.AfterFunc(d, func() { cancel(causeFirstByte) })
	}
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		resp.stop()
		return nil, &adapter.Error{Kind: adapter.KindMisconfigured, Message: "endpoint is not a valid URL", Err: err}
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	if c.cred.Header != "" {
		// Never let a caller's header stand in for (or sit beside) the key.
		req.Header.Del(c.cred.Header)
		if r.APIKey != "" {
			req.Header.Set(c.cred.Header, c.cred.Prefix+r.APIKey)
		}
	}
	// One exchange, straight on the transport: an http.Client would follow
	// a redirect and send the body, and a key in a header of the
	// provider's own (X-Api-Key, Api-Key), to wherever it points.
	hr, err := c.rt.RoundTrip(req)
	if fb != nil {
		fb.Stop()
	}
	if err != nil {
		resp.stop()
		return nil, resp.connectError(err)
	}
	if hr.StatusCode < 200 || hr.StatusCode > 299 {
		defer resp.stop()
		defer hr.Body.Close()
		e := HTTPError(hr, r.APIKey, c.now)
		if cerr := resp.ctxError(); cerr != nil {
			// The error body was cut short by a deadline; still report it.
			e.Err = cerr
		}
		return nil, e
	}
	if e := NotAStream(hr.Header); e != nil {
		resp.stop()
		_ = hr.Body.Close()
		return nil, e
	}
	resp.Header = hr.Header
	resp.body = hr.Body
	return resp, nil
}

// firstByte returns how long this attempt may wait for response headers:
// the FirstByte timeout, cut to what remains of the call's deadline
// (adapter.WithFirstByteDeadline). ok is false when neither bounds it.
func (c *Client) firstByte(ctx context.Context) (d time.Duration, ok bool) {
	d, ok = c.timeouts.FirstByte, c.timeouts.FirstByte > 0
	if dl, has := adapter.FirstByteDeadline(ctx); has {
		if rem := time.Until(dl); !ok || rem < d {
			d, ok = rem, true
		}
	}
	return d, ok
}

// connectError classifies a failure before any response arrived.
func (r *Response) connectError(err error) error {
	if cerr := r.ctxError(); cerr != nil {
		return cerr
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &adapter.Error{Kind: adapter.KindTimeout, Timeout: TimeoutConnect, Retryable: true,
			Message: "timed out connecting to the model server", Err: err}
	}
	return &adapter.Error{Kind: adapter.KindUnavailable, Retryable: true,
		Message: "cannot reach the model server", Err: err}
}

// Response is a 2xx streaming body. Read enforces the idle and total
// timeouts and the body bound; Close must be called when done.
type Response struct {
	Header http.Header

	parent  context.Context
	ctx     context.Context
	cancel  context.CancelCauseFunc
	body    io.ReadCloser
	total   *time.Timer
	idle    *time.Timer
	idleDur time.Duration
	read    int64
	max     int64
	secret  string
	once    sync.Once
	flush   func() error // Coalesce: runs before every read
}

// Read reads the body. Errors other than io.EOF are already classified:
// *adapter.Error (timeouts, body too large, connection lost) or the
// caller's ctx.Err(). With a Coalescer (Coalesce), Read first returns what
// of the body has already arrived (a body that can tell, bufferedReader)
// and hands queued text on only before a read that may wait on the model;
// if that fails, Read returns the Coalescer's error.
func (r *Response) Read(p []byte) (int, error) {
	if rem := r.max - r.read + 1; int64(len(p)) > rem {
		p = p[:rem] // read one byte past the bound to detect overflow
	}
	n, err := r.readBuffered(p)
	if n == 0 && err == nil {
		if r.flush != nil {
			if err := r.flush(); err != nil {
				return 0, err
			}
		}
		n, err = r.wait(p)
	}
	if n > 0 {
		r.read += int64(n)
		if r.read > r.max {
			return n - int(r.read-r.max), &adapter.Error{Kind: adapter.KindMalformed,
				Message: fmt.Sprintf("response body exceeds %d bytes", r.max)}
		}
	}
	if err != nil && err != io.EOF {
		err = r.readError(err)
	}
	return n, err
}

// bufferedReader is a body that can return what has already arrived
// without waiting: ReadBuffered returns (0, nil) when a Read would wait
// (gateway/internal/h1's bodies).
type bufferedReader interface {
	ReadBuffered(p []byte) (int, error)
}

// readBuffered returns what of the body has already arrived, when a
// Coalescer is queueing text and the body can tell; (0, nil) otherwise.
func (r *Response) readBuffered(p []byte) (int, error) {
	if br, ok := r.body.(bufferedReader); ok && r.flush != nil {
		return br.ReadBuffered(p)
	}
	return 0, nil
}

// wait reads the body, waiting on the server if need be, under the idle
// bound.
func (r *Response) wait(p []byte) (int, error) {
	// The idle bound covers only time spent waiting on the server, not
	// time the caller spends relaying what it already has.
	if r.idleDur > 0 {
		if r.idle == nil {
			r.idle = time.AfterFunc(r.idleDur, func() { r.cancel(causeIdle) })
		} else {
			r.idle.Reset(r.idleDur)
		}
	}
	n, err := r.body.Read(p)
	if r.idle != nil {
		r.idle.Stop()
	}
	return n, err
}

// readError classifies a failed body read.
func (r *Response) readError(err error) error {
	if cerr := r.ctxError(); cerr != nil {
		return cerr
	}
	return &adapter.Error{Kind: adapter.KindUnavailable, Retryable: true,
		Message: "connection to the model server lost mid-stream", Err: err}
}

// ctxError reports why the call's context ended, if it did: the caller's
// own cancellation or deadline, or one of our timeouts.
func (r *Response) ctxError() error {
	if err := r.parent.Err(); err != nil {
		return err
	}
	if r.ctx.Err() == nil {
		return nil
	}
	var tc *timeoutCause
	if errors.As(context.Cause(r.ctx), &tc) {
		return &adapter.Error{Kind: adapter.KindTimeout, Timeout: tc.name, Retryable: true,
			Message: "model server " + tc.name + " timeout expired"}
	}
	return nil
}

// Fail returns err unchanged if it is already classified, else the context
// error if the call's context ended, else err.
func (r *Response) Fail(err error) error {
	if _, ok := adapter.AsError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if cerr := r.ctxError(); cerr != nil {
		return cerr
	}
	return err
}

// StreamError is StreamError for an error frame of this response, with the
// call's API key scrubbed.
func (r *Response) StreamError(data []byte) *adapter.Error { return StreamError(data, r.secret) }

// Close closes the body, then stops the timers and cancels the request. The
// body goes first so the transport decides the connection's fate while the
// request is still live: h1 keeps a connection whose short rest (the final
// chunk after the answer's end marker) arrives soon; a cancelled request's
// connection is always dropped.
func (r *Response) Close() error {
	var err error
	if r.body != nil {
		err = r.body.Close()
	}
	r.stop()
	return err
}

func (r *Response) stop() {
	r.once.Do(func() {
		if r.total != nil {
			r.total.Stop()
		}
		if r.idle != nil {
			r.idle.Stop()
		}
		r.cancel(errCauseDone)
	})
}
