package load

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/metadata"

	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

// Gateway streams completions through the gateway's CompletionService.
type Gateway struct {
	// Clients are spread over workers round-robin (one per connection).
	Clients []gatewayv1.CompletionServiceClient
	// MD is the token and x-gitlab-* metadata sent with every call.
	MD metadata.MD
	// Feature is the requested feature (e.g. duo_chat).
	Feature string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// OnFirstChunk, when set, is called once per stream as its first text
	// chunk arrives (the scale test counts open streams with it).
	OnFirstChunk func()
}

var _ Target = (*Gateway)(nil)

// Stream implements Target.
func (g *Gateway) Stream(ctx context.Context, worker int) Stream {
	now := g.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, g.MD))
	defer cancel()
	c := g.Clients[worker%len(g.Clients)]
	start := now()
	var s Stream
	st, err := c.StreamCompletion(ctx, &gatewayv1.StreamCompletionRequest{Feature: g.Feature,
		Messages: []*gatewayv1.Message{{Role: "user", Content: "Say hello"}}})
	if err != nil {
		s.Err = err
		return s
	}
	var m gatewayv1.StreamCompletionResponse
	for {
		err := st.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.Err = err
			break
		}
		if m.GetText() != "" {
			if s.Chunks == 0 {
				s.TTFT = now().Sub(start)
				if g.OnFirstChunk != nil {
					g.OnFirstChunk()
				}
			}
			s.Chunks++
		}
	}
	s.Total = now().Sub(start)
	if s.Err == nil && s.Chunks == 0 {
		s.Err = errors.New("load: gateway stream carried no text")
	}
	return s
}
