package upstream

import "github.com/airlock-dev/airlock/gateway/adapter"

// Coalescer joins the text deltas decoded from what has arrived of a
// Response and hands them on as one delta just before the Response reads
// from the network again (while the body has more already received, its
// reads return that first and the text stays queued), so text is never
// held while the gateway waits on the model, and a burst of events that
// arrived together costs the caller's side one message instead of one per
// event (a relay then pays one write per wait on the model, as a plain
// proxy does). The queue holds at most what one burst from the network
// brought. The first text of a batch is kept as is; only a batch of
// several is copied.
//
// Use it as
//
//	co := resp.Coalesce(emit)
//	res, err := decode(resp, ..., co.Emit)
//	return co.Finish(res, err)
//
// A delta with tool-call fragments is handed on at once, joined after the
// text queued before it (a Delta carries its text first), so text and tool
// calls keep their order.
type Coalescer struct {
	emit  func(adapter.Delta) error
	first string // the batch's only text, not yet copied
	more  []byte // the batch when it holds more than one text
	err   error  // emit failed: every later call reports it
}

// Coalesce returns a Coalescer for emit and makes r flush it before every
// read of the body.
func (r *Response) Coalesce(emit func(adapter.Delta) error) *Coalescer {
	c := &Coalescer{emit: emit}
	r.flush = c.Flush
	return c
}

// Emit queues d's text, or hands d on at once, after the queued text, when
// it carries tool-call fragments. It returns the error of an earlier failed
// emit, so a decoder stops at the next delta after the caller went away.
func (c *Coalescer) Emit(d adapter.Delta) error {
	switch {
	case c.err != nil:
		return c.err
	case len(d.ToolCalls) > 0:
		d.Text = c.take() + d.Text
		c.err = c.emit(d)
		return c.err
	case d.Text == "":
	case c.first == "" && len(c.more) == 0:
		c.first = d.Text
	default:
		if len(c.more) == 0 {
			c.more = append(c.more, c.first...)
			c.first = ""
		}
		c.more = append(c.more, d.Text...)
	}
	return nil
}

// Flush hands the queued text to emit.
func (c *Coalescer) Flush() error {
	if c.err != nil {
		return c.err
	}
	if text := c.take(); text != "" {
		c.err = c.emit(adapter.Delta{Text: text})
	}
	return c.err
}

// take returns the queued text and empties the queue.
func (c *Coalescer) take() string {
	var text string
	switch {
	case len(c.more) > 0:
		text = string(c.more)
		c.more = c.more[:0]
	case c.first != "":
		text, c.first = c.first, ""
	}
	return text
}

// Finish ends a decode: an emit failure is returned as is (it wins over
// whatever the decoder made of it), and text still queued is handed on
// before the decoder's result or error, so text received before a failure
// stays delivered.
func (c *Coalescer) Finish(res adapter.Result, err error) (adapter.Result, error) {
	if ferr := c.Flush(); ferr != nil {
		return adapter.Result{}, ferr
	}
	return res, err
}
