package openai

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
)

type usageObject struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// usageOf is the usage the model server reported (zeros when it reported
// none).
func usageOf(done *gatewayv1.CompletionDone) usageObject {
	u := done.GetUsage()
	p, c := int(u.GetPromptTokens()), int(u.GetCompletionTokens())
	return usageObject{PromptTokens: p, CompletionTokens: c, TotalTokens: p + c}
}

func finishReason(f gatewayv1.FinishReason) string {
	switch f {
	case gatewayv1.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case gatewayv1.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "tool_calls"
	case gatewayv1.FinishReason_FINISH_REASON_CONTENT_FILTER:
		return "content_filter"
	}
	return "stop"
}

// head is what every answer object starts with.
type head struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
}

// shape builds one endpoint's answer objects.
type shape interface {
	idPrefix() string
	// delta is a streamed chunk carrying text; first marks the first one.
	delta(h head, text string, first bool) any
	// final is the streamed chunk with the finish reason.
	final(h head, finish string, first bool) any
	// usage is the streamed usage chunk (choices: []).
	usage(h head, u usageObject) any
	// whole is the non-streamed answer.
	whole(h head, a *completion.Answer, finish string, u usageObject) any
}

type chatShape struct{}

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []toolCallDelta `json:"tool_calls,omitempty"`
}

// toolCallDelta is a fragment of a streamed tool call; id, type and
// function.name are set on a call's first fragment only, as OpenAI does.
type toolCallDelta struct {
	Index    int              `json:"index"`
	ID       string           `json:"id,omitempty"`
	Type     string           `json:"type,omitempty"`
	Function toolCallFragment `json:"function"`
}

type toolCallFragment struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type toolCallObject struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatChunk struct {
	head
	Choices []chatChunkChoice `json:"choices"`
	Usage   *usageObject      `json:"usage,omitempty"`
}

func (chatShape) idPrefix() string { return "chatcmpl-" }

func (chatShape) delta(h head, text string, first bool) any {
	d := chatDelta{Content: &text}
	if first {
		d.Role = "assistant"
	}
	return chatChunk{head: h, Choices: []chatChunkChoice{{Delta: d}}}
}

func (chatShape) final(h head, finish string, first bool) any {
	var d chatDelta
	if first {
		empty := ""
		d = chatDelta{Role: "assistant", Content: &empty}
	}
	return chatChunk{head: h, Choices: []chatChunkChoice{{Delta: d, FinishReason: &finish}}}
}

func (chatShape) usage(h head, u usageObject) any {
	return chatChunk{head: h, Choices: []chatChunkChoice{}, Usage: &u}
}

func (chatShape) whole(h head, a *completion.Answer, finish string, u usageObject) any {
	type message struct {
		Role      string           `json:"role"`
		Content   *string          `json:"content"` // null: only tool calls
		Refusal   *string          `json:"refusal"`
		ToolCalls []toolCallObject `json:"tool_calls,omitempty"`
	}
	type choice struct {
		Index        int       `json:"index"`
		Message      message   `json:"message"`
		Logprobs     *struct{} `json:"logprobs"`
		FinishReason string    `json:"finish_reason"`
	}
	m := message{Role: "assistant"}
	text, calls := a.Text(), a.ToolCalls()
	if text != "" || len(calls) == 0 {
		m.Content = &text
	}
	for i, c := range calls {
		var o toolCallObject
		o.ID, o.Type, o.Function.Name, o.Function.Arguments = c.GetId(), "function", c.GetName(), c.GetArguments()
		if o.ID == "" { // a model server that sends no ids: make one
			o.ID = callID(h, i)
		}
		m.ToolCalls = append(m.ToolCalls, o)
	}
	return struct {
		head
		Choices []choice    `json:"choices"`
		Usage   usageObject `json:"usage"`
	}{h, []choice{{Message: m, FinishReason: finish}}, u}
}

type textShape struct{}

type textChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type textChunk struct {
	head
	Choices []textChoice `json:"choices"`
	Usage   *usageObject `json:"usage,omitempty"`
}

func (textShape) idPrefix() string { return "cmpl-" }

func (textShape) delta(h head, text string, _ bool) any {
	return textChunk{head: h, Choices: []textChoice{{Text: text}}}
}

func (textShape) final(h head, finish string, _ bool) any {
	return textChunk{head: h, Choices: []textChoice{{FinishReason: &finish}}}
}

func (textShape) usage(h head, u usageObject) any {
	return textChunk{head: h, Choices: []textChoice{}, Usage: &u}
}

func (textShape) whole(h head, a *completion.Answer, finish string, u usageObject) any {
	return textChunk{head: h, Choices: []textChoice{{Text: a.Text(), FinishReason: &finish}}, Usage: &u}
}

// run answers req, aggregated or streamed.
func (h *handlers) run(w http.ResponseWriter, r *http.Request, req *request, s shape) {
	ctx := r.Context()
	hd := head{ID: s.idPrefix() + httpapi.RequestID(ctx), Created: h.now().Unix(), Model: req.model}
	if !req.stream {
		var a completion.Answer
		done, err := h.c.Serve(ctx, req.in, a.Add)
		if err != nil {
			h.fail(w, r, req, err)
			return
		}
		if _, ok := s.(chatShape); ok {
			hd.Object = "chat.completion"
		} else {
			hd.Object = "text_completion"
		}
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeTimeout))
		writeJSON(w, http.StatusOK, s.whole(hd, &a, finishReason(done.GetFinishReason()), usageOf(done)))
		return
	}
	if _, ok := s.(chatShape); ok {
		hd.Object = "chat.completion.chunk"
	} else {
		hd.Object = "text_completion"
	}
	st := newSSE(w)
	first := true
	firstFrame, nextFrame := newDeltaFrame(s, hd, true), newDeltaFrame(s, hd, false)
	var calls toolCallStream
	done, err := h.c.ServeStream(ctx, req.in, func(d completion.Delta) error {
		if d.Text != "" {
			f := nextFrame
			if first {
				f, first = firstFrame, false
			}
			if err := st.Write(f.frame(d.Text)); err != nil {
				return err
			}
		}
		for _, c := range d.ToolCalls {
			if err := event(st, calls.chunk(hd, c, first)); err != nil {
				return err
			}
			first = false
		}
		return nil
	})
	if err != nil {
		st.Fail(ctx, func(started bool, write func([]byte) error) {
			if !started {
				h.fail(w, r, req, err)
				return
			}
			e := httpapi.FromStatus(err)
			coreParam(e, req.rename)
			logging.AddFields(ctx, logging.Fields{"stream_error", e.Message})
			_ = write(errorEnvelope(e)) // the stream ends here either way
		})
		return
	}
	// No sender runs any more: the rest is written from here, in order.
	_ = event(st, s.final(hd, finishReason(done.GetFinishReason()), first))
	if req.includeUsage {
		_ = event(st, s.usage(hd, usageOf(done)))
	}
	_ = st.Write([]byte("data: [DONE]\n\n"))
}

// toolCallStream writes a stream's tool-call fragments as OpenAI does: id,
// type and function.name on the first fragment of each call only (the SDKs
// concatenate every fragment's name and arguments).
type toolCallStream struct {
	started [128]bool // by index; the core bounds indexes below 128
}

func (s *toolCallStream) chunk(h head, c completion.ToolCallDelta, first bool) chatChunk {
	d := toolCallDelta{Index: c.Index, Function: toolCallFragment{Arguments: c.Arguments}}
	if c.Index >= 0 && c.Index < len(s.started) && !s.started[c.Index] {
		s.started[c.Index] = true
		d.ID, d.Type, d.Function.Name = c.ID, "function", c.Name
		if d.ID == "" { // a model server that sends no ids: make one
			d.ID = callID(h, c.Index)
		}
	}
	cd := chatDelta{ToolCalls: []toolCallDelta{d}}
	if first {
		cd.Role = "assistant"
	}
	return chatChunk{head: h, Choices: []chatChunkChoice{{Delta: cd}}}
}

// callID names a tool call whose model server gave it no id, the same way
// streamed and whole.
func callID(h head, index int) string { return fmt.Sprintf("call_%s_%d", h.ID, index) }

// fail answers a failure before any byte of the answer was written.
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, req *request, err error) {
	e := httpapi.FromStatus(err)
	coreParam(e, req.rename)
	writeError(w, r, e)
}

// newSSE returns the server-sent event stream of one answer, on the
// listener's shared httpapi.Stream (each event flushed whole; the handler
// takes it over from a relay stuck on a client that stopped reading).
func newSSE(w http.ResponseWriter) *httpapi.Stream {
	return httpapi.NewStream(w, func(h http.Header) { h.Set("Content-Type", "text/event-stream; charset=utf-8") })
}

// event writes v as one `data:` event.
func event(st *httpapi.Stream, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.Write(frame(b))
}

func frame(payload []byte) []byte {
	out := make([]byte, 0, len(payload)+8)
	out = append(out, "data: "...)
	out = append(out, payload...)
	return append(out, '\n', '\n')
}

// deltaFrame is a text chunk's SSE event split around its text, built once
// per stream from the shape's own encoding: each delta then costs one
// string escape instead of encoding the whole chunk.
type deltaFrame struct{ prefix, suffix []byte }

// placeholder is text that encodes to a JSON string found nowhere else in
// a chunk (a NUL byte), so splitting on it is exact.
const placeholder = "\x00"

func newDeltaFrame(s shape, h head, first bool) deltaFrame {
	b, err := json.Marshal(s.delta(h, placeholder, first))
	if err != nil {
		panic(err) // plain structs of strings and ints always encode
	}
	pre, suf, ok := strings.Cut(string(b), `"\u0000"`)
	if !ok {
		panic("openai: placeholder missing from the encoded chunk")
	}
	return deltaFrame{prefix: []byte("data: " + pre), suffix: []byte(suf + "\n\n")}
}

func (f deltaFrame) frame(text string) []byte {
	q, _ := json.Marshal(text) // a string always encodes
	out := make([]byte, 0, len(f.prefix)+len(q)+len(f.suffix))
	out = append(out, f.prefix...)
	out = append(out, q...)
	return append(out, f.suffix...)
}
