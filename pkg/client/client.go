package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// Client calls the gateway's CompletionService. The connection must carry
// credentials (NewPerRPCCredentials). A Client is safe for concurrent use.
type Client struct {
	cs gatewayv1.CompletionServiceClient
}

// New returns a Client over cc, a connection to the gateway.
func New(cc grpc.ClientConnInterface) *Client {
	return &Client{cs: gatewayv1.NewCompletionServiceClient(cc)}
}

// System, User and Assistant build chat turns.
func System(text string) *gatewayv1.Message { return &gatewayv1.Message{Role: "system", Content: text} }

// User builds a user chat turn.
func User(text string) *gatewayv1.Message { return &gatewayv1.Message{Role: "user", Content: text} }

// Assistant builds an assistant chat turn.
func Assistant(text string) *gatewayv1.Message {
	return &gatewayv1.Message{Role: "assistant", Content: text}
}

// Usage counts tokens as the model server reported them.
type Usage struct {
	PromptTokens     uint32
	CompletionTokens uint32
}

// Done is how an answer ended.
type Done struct {
	// FinishReason is why generation ended.
	FinishReason gatewayv1.FinishReason
	// Usage is nil when the model server reported none.
	Usage *Usage
	// Model is the configured model that answered (the fallback's if used).
	Model string
}

// Reason returns the finish reason in lower case without its prefix
// ("stop", "length", "tool_calls", "content_filter").
func (d Done) Reason() string {
	return strings.ToLower(strings.TrimPrefix(d.FinishReason.String(), "FINISH_REASON_"))
}

func doneFrom(d *gatewayv1.CompletionDone) Done {
	out := Done{FinishReason: d.GetFinishReason(), Model: d.GetModel()}
	if u := d.GetUsage(); u != nil {
		out.Usage = &Usage{PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens()}
	}
	return out
}

// Completion is a whole answer.
type Completion struct {
	Text string
	Done Done
}

// Stream streams an answer for a chat feature (or a code feature given as
// messages). See StreamRequest.
func (c *Client) Stream(ctx context.Context, feature string, messages ...*gatewayv1.Message) *Stream {
	return c.StreamRequest(ctx, &gatewayv1.StreamCompletionRequest{Feature: feature, Messages: messages})
}

// StreamCode streams an answer for a code feature (code_completions,
// code_generations) from the editor state. See StreamRequest.
func (c *Client) StreamCode(ctx context.Context, feature string, code *gatewayv1.CodeContext) *Stream {
	return c.StreamRequest(ctx, &gatewayv1.StreamCompletionRequest{Feature: feature, CodeContext: code})
}

// StreamRequest starts StreamCompletion with a full request (generation
// options included). It never fails itself: a failure to start surfaces as
// the first Next returning false and Err. The caller must call Close, or
// read until Next returns false, to release the stream.
func (c *Client) StreamRequest(ctx context.Context, req *gatewayv1.StreamCompletionRequest) *Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{cancel: cancel}
	s.rs, s.err = c.cs.StreamCompletion(ctx, req)
	if s.err != nil {
		s.fail(s.err)
	}
	return s
}

// Complete returns a whole answer for a chat feature. See CompleteRequest.
func (c *Client) Complete(ctx context.Context, feature string, messages ...*gatewayv1.Message) (*Completion, error) {
	return c.CompleteRequest(ctx, &gatewayv1.CompleteRequest{Feature: feature, Messages: messages})
}

// CompleteCode returns a whole answer for a code feature from the editor
// state. See CompleteRequest.
func (c *Client) CompleteCode(ctx context.Context, feature string, code *gatewayv1.CodeContext) (*Completion, error) {
	return c.CompleteRequest(ctx, &gatewayv1.CompleteRequest{Feature: feature, CodeContext: code})
}

// CompleteRequest calls the unary Complete with a full request. Errors are
// *Error values.
func (c *Client) CompleteRequest(ctx context.Context, req *gatewayv1.CompleteRequest) (*Completion, error) {
	resp, err := c.cs.Complete(ctx, req)
	if err != nil {
		return nil, FromError(err)
	}
	return &Completion{Text: resp.GetText(), Done: doneFrom(resp.GetDone())}, nil
}

// Stream is an answer arriving as text deltas, used like bufio.Scanner:
//
//	for s.Next() { fmt.Print(s.Text()) }
//	done, err := s.Done() // err is s.Err() after a failure
//
// A Stream is not safe for concurrent use.
type Stream struct {
	rs     grpc.ServerStreamingClient[gatewayv1.StreamCompletionResponse]
	cancel context.CancelFunc
	text   string
	done   *Done
	err    error
	ended  bool
}

// Next waits for the next non-empty text delta and reports whether there is
// one. It returns false at the end of the answer or on an error; Err then
// tells which. A stream that ends without the gateway's final done message
// is an Internal error, because the answer may be cut short.
func (s *Stream) Next() bool {
	if s.ended {
		return false
	}
	for {
		m, err := s.rs.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if s.done == nil {
					s.fail(newError(codes.Internal, "stream ended without a done message"))
				} else {
					s.end()
				}
			} else {
				s.fail(err)
			}
			return false
		}
		if s.done != nil {
			s.fail(newError(codes.Internal, "message after the done message"))
			return false
		}
		if d := m.GetDone(); d != nil {
			dd := doneFrom(d)
			s.done = &dd
		}
		if m.GetText() != "" {
			s.text = m.GetText()
			return true
		}
	}
}

// Text returns the delta Next just found.
func (s *Stream) Text() string { return s.text }

// Err returns the error that ended the stream (an *Error), or nil after a
// complete answer or while it is still going.
func (s *Stream) Err() error { return s.err }

// errNotDone is Done's error while the answer is still going.
var errNotDone = newError(codes.FailedPrecondition, "stream not finished: read until Next returns false before calling Done")

// Done returns how the answer ended once Next has returned false. After a
// failure it returns the error that ended the stream (the *Error Err
// returns); before the end it returns a FailedPrecondition *Error.
func (s *Stream) Done() (Done, error) {
	switch {
	case s.err != nil:
		return Done{}, s.err
	case !s.ended || s.done == nil:
		return Done{}, errNotDone
	}
	return *s.done, nil
}

// Close cancels the stream if it is still going. It is safe to call more
// than once and after the end.
func (s *Stream) Close() {
	if !s.ended {
		s.fail(context.Canceled)
	}
}

// Deltas returns the stream as an iterator of text deltas. The last pair
// carries the error, if any; breaking out of the loop closes the stream.
//
//	for text, err := range s.Deltas() { ... }
func (s *Stream) Deltas() iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		defer s.Close()
		for s.Next() {
			if !yield(s.Text(), nil) {
				return
			}
		}
		if err := s.Err(); err != nil {
			yield("", err)
		}
	}
}

func (s *Stream) end() {
	s.ended = true
	s.text = ""
	s.cancel()
}

func (s *Stream) fail(err error) {
	s.err = FromError(err)
	s.end()
}
