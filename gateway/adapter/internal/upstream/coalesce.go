package upstream

import "github.com/airlock-dev/airlock/gateway/adapter"

// Coalescer joins the text deltas decoded from what one read of a Response
// returned and hands them on as one delta just before the Response reads
// from the network again, so text is never held while the gateway waits on
// the model, and a burst of events that arrived together costs the caller's
// side one message instead of one per event (a relay then pays one write per
// read of the model, as a plain proxy does). The first text of a batch is
// kept as is; only a batch of several is copied.
//
// Use it as
//
//	co := resp.Coalesce(emit)
//	res, err := decode(resp, ..., co.Emit)
//	return co.Finish(res, err)
type Coalescer struct {
	emit  func(string) error
	first string // the batch's only text, not yet copied
	more  []byte // the batch when it holds more than one text
	err   error  // emit failed: every later call reports it
}

// Coalesce returns a Coalescer for emit and makes r flush it before every
// read of the body.
func (r *Response) Coalesce(emit func(string) error) *Coalescer {
	c := &Coalescer{emit: emit}
	r.flush = c.Flush
	return c
}

// Emit queues text. It returns the error of an earlier failed emit, so a
// decoder stops at the next delta after the caller went away.
func (c *Coalescer) Emit(text string) error {
	switch {
	case c.err != nil:
		return c.err
	case text == "":
	case c.first == "" && len(c.more) == 0:
		c.first = text
	default:
		if len(c.more) == 0 {
			c.more = append(c.more, c.first...)
			c.first = ""
		}
		c.more = append(c.more, text...)
	}
	return nil
}

// Flush hands the queued text to emit.
func (c *Coalescer) Flush() error {
	if c.err != nil {
		return c.err
	}
	var text string
	switch {
	case len(c.more) > 0:
		text = string(c.more)
		c.more = c.more[:0]
	case c.first != "":
		text, c.first = c.first, ""
	default:
		return nil
	}
	c.err = c.emit(text)
	return c.err
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
