package oaistream

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
)

type rawBody struct{ io.Reader }

func (rawBody) Fail(err error) error { return err }

func (rawBody) StreamError(data []byte) *adapter.Error { return upstream.StreamError(data, "") }

// longStream builds an OpenAI stream of n content chunks as OpenAI sends them.
func longStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
	for i := range n {
		fmt.Fprintf(&b, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" tok%d"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"abc"}`+"\n\n", i%10)
	}
	b.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}` + "\n\n")
	b.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":1000,"total_tokens":1010}}` + "\n\ndata: [DONE]\n\n")
	return b.Bytes()
}

func TestDecodeLongStream(t *testing.T) {
	var text strings.Builder
	n := 0
	res, err := NewDecoder(Chat).Decode(rawBody{bytes.NewReader(longStream(1000))}, 0, func(d adapter.Delta) error {
		n++
		text.WriteString(d.Text)
		return nil
	})
	if err != nil || n != 1000 || res.Finish != adapter.FinishStop || res.Usage == nil || res.Usage.CompletionTokens != 1000 {
		t.Fatalf("got %d deltas, %+v, %v", n, res, err)
	}
	if !strings.HasPrefix(text.String(), " tok0 tok1 tok2") {
		t.Fatalf("text starts %q", text.String()[:20])
	}
}

func TestChunkFieldsDoNotLeakBetweenChunks(t *testing.T) {
	stream := `data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{}}]}` + "\n\n" +
		`data: {"choices":[{"index":0}]}` + "\n\ndata: [DONE]\n\n"
	var got []string
	res, err := NewDecoder(Chat).Decode(rawBody{strings.NewReader(stream)}, 0, func(d adapter.Delta) error { got = append(got, d.Text); return nil })
	if err != nil || len(got) != 1 || res.Finish != adapter.FinishLength || res.Usage == nil || res.Usage.CompletionTokens != 2 {
		t.Fatalf("deltas %q, %+v, %v: a field leaked from an earlier chunk", got, res, err)
	}
}

// BenchmarkDecodeLongStream decodes a 1000-chunk OpenAI stream; allocs/op
// divided by 1000 is the per-chunk cost.
func BenchmarkDecodeLongStream(b *testing.B) {
	data := longStream(1000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_, err := NewDecoder(Chat).Decode(rawBody{bytes.NewReader(data)}, 0, func(adapter.Delta) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChatBody encodes a chat request of a typical code-chat size.
func BenchmarkChatBody(b *testing.B) {
	temp := float32(0.2)
	req := &adapter.Request{MaxTokens: 256, Temperature: &temp, Stop: []string{"\n\n"}}
	msgs := []adapter.Message{
		{Role: "system", Content: strings.Repeat("You are a helpful <coding> assistant & reviewer.\n", 8)},
		{Role: "user", Content: strings.Repeat("func main() {\n\tfmt.Println(\"héllo\")\n}\n", 30)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ChatBody(req, "qwen2.5-coder", msgs, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChatBodyFreshGoroutine encodes each request on a new goroutine,
// as the gateway does (one per call), so stack growth counts.
func BenchmarkChatBodyFreshGoroutine(b *testing.B) {
	temp := float32(0.2)
	req := &adapter.Request{MaxTokens: 256, Temperature: &temp, Stop: []string{"\n\n"}}
	msgs := []adapter.Message{
		{Role: "system", Content: strings.Repeat("You are a helpful <coding> assistant & reviewer.\n", 8)},
		{Role: "user", Content: strings.Repeat("func main() {\n\tfmt.Println(\"héllo\")\n}\n", 30)},
	}
	b.ReportAllocs()
	done := make(chan error)
	for b.Loop() {
		go func() {
			_, err := ChatBody(req, "qwen2.5-coder", msgs, true)
			done <- err
		}()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
