// Package stubmodel is a deterministic OpenAI-compatible model server used by
// the demo, the tests and the benchmarks. It is a test double: it generates
// no language, it replays a fixed sentence word by word. Nothing may treat it
// as the product's model support.
//
// It serves POST /v1/chat/completions and POST /v1/completions (streaming SSE
// with `data: [DONE]`, or one JSON body when stream is false), GET /v1/models,
// GET /healthz and GET /debug/last-request (the body of the last completion
// request, so the benchmarks can send a model exactly what the gateway
// sends).
//
// A chat request with tools (and tool_choice not "none") whose last message
// is not a tool result is answered with one deterministic tool call, as
// OpenAI streams it: the first tool's name (or tool_choice's function),
// id ToolCallID, arguments ToolArguments split over several chunks, finish
// "tool_calls" (non-streamed: message.tool_calls, content null).
package stubmodel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Sentence is the text the stub replays, one word per token, cycling.
const Sentence = "Hello from the Airlock stub model. This answer streamed through the gateway, token by token, inside your cluster."

// ToolCallID and ToolArguments are the stub's tool call.
const (
	ToolCallID    = "call_stub_0"
	ToolArguments = `{"location":"Paris, France","unit":"celsius"}`
)

// toolFragments splits ToolArguments as a model streams it.
var toolFragments = []string{`{"location"`, `:"Paris, `, `France","unit`, `":"celsius"}`}

// Config shapes the stub's answers.
type Config struct {
	Tokens     int           // tokens per answer (default 16); a request's max_tokens caps it (finish "length")
	Delay      time.Duration // pause before each token
	FirstDelay time.Duration // extra pause before the first token
	Model      string        // model id reported (default "airlock-stub")
	APIKey     string        // if set, require `Authorization: Bearer <APIKey>` (401 otherwise)
}

// Server is the stub's HTTP handler.
type Server struct {
	cfg      Config
	words    []string
	requests atomic.Int64
	last     atomic.Pointer[[]byte] // body of the last completion request
}

// New returns a stub server; zero fields take defaults.
func New(cfg Config) *Server {
	if cfg.Tokens <= 0 {
		cfg.Tokens = 16
	}
	if cfg.Model == "" {
		cfg.Model = "airlock-stub"
	}
	words := strings.SplitAfter(Sentence, " ")
	return &Server{cfg: cfg, words: words}
}

// Requests returns how many completion requests the stub has served.
func (s *Server) Requests() int64 { return s.requests.Load() }

// Text returns the deterministic answer of n tokens.
func (s *Server) Text(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(s.words[i%len(s.words)])
	}
	return b.String()
}

type request struct {
	Model         string            `json:"model"`
	Stream        bool              `json:"stream"`
	MaxTokens     int               `json:"max_tokens"`
	Prompt        any               `json:"prompt"`
	Messages      []json.RawMessage `json:"messages"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

// toolCall returns the function the stub calls for req, or "" to answer
// with text.
func (req *request) toolCall() string {
	if len(req.Tools) == 0 || len(req.Messages) == 0 {
		return ""
	}
	var last struct {
		Role string `json:"role"`
	}
	if json.Unmarshal(req.Messages[len(req.Messages)-1], &last) == nil && last.Role == "tool" {
		return "" // the tool answered: reply with text
	}
	var mode string
	if json.Unmarshal(req.ToolChoice, &mode) == nil && mode == "none" {
		return ""
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(req.ToolChoice, &named) == nil && named.Function.Name != "" {
		return named.Function.Name
	}
	return req.Tools[0].Function.Name
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/healthz":
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	case "/v1/models":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":%q,"object":"model","owned_by":"airlock"}]}`+"\n", s.cfg.Model)
	case "/v1/chat/completions":
		s.complete(w, r, true)
	case "/v1/completions":
		s.complete(w, r, false)
	case "/debug/last-request":
		w.Header().Set("Content-Type", "application/json")
		if b := s.last.Load(); b != nil {
			_, _ = w.Write(*b)
		}
	default:
		writeError(w, http.StatusNotFound, "invalid_request_error", "unknown path "+r.URL.Path)
	}
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, chat bool) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "use POST")
		return
	}
	if s.cfg.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+s.cfg.APIKey {
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "Incorrect API key provided.")
		return
	}
	var req request
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "request body is not valid JSON")
		return
	}
	s.last.Store(&body)
	if chat && len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages is required")
		return
	}
	s.requests.Add(1)
	n, finish := s.cfg.Tokens, "stop"
	if req.MaxTokens > 0 && req.MaxTokens < n {
		n, finish = req.MaxTokens, "length"
	}
	model := req.Model
	if model == "" {
		model = s.cfg.Model
	}
	if name := req.toolCall(); chat && name != "" {
		s.tool(w, r.Context(), model, name, req.Stream, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	if !req.Stream {
		s.whole(w, r.Context(), chat, model, n, finish)
		return
	}
	s.stream(w, r.Context(), chat, model, n, finish, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

const promptTokens = 8 // reported prompt size; the stub does not tokenize

func (s *Server) stream(w http.ResponseWriter, ctx context.Context, chat bool, model string, n int, finish string, usage bool) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	id := "stub-" + strconv.FormatInt(s.requests.Load(), 10)
	created := time.Now().Unix()
	kind := "chat.completion.chunk"
	if !chat {
		kind = "text_completion"
	}
	head := fmt.Sprintf(`data: {"id":%q,"object":%q,"created":%d,"model":%q,"choices":[{"index":0,`, id, kind, created, model)
	buf := make([]byte, 0, 256)
	send := func(body string) bool {
		buf = append(buf[:0], head...)
		buf = append(buf, body...)
		buf = append(buf, "\n\n"...)
		if _, err := w.Write(buf); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if chat && !send(`"delta":{"role":"assistant","content":""},"finish_reason":null}]}`) {
		return
	}
	if !sleep(ctx, s.cfg.FirstDelay) {
		return
	}
	for i := 0; i < n; i++ {
		if !sleep(ctx, s.cfg.Delay) {
			return
		}
		word, _ := json.Marshal(s.words[i%len(s.words)])
		var body string
		if chat {
			body = `"delta":{"content":` + string(word) + `},"finish_reason":null}]}`
		} else {
			body = `"text":` + string(word) + `,"finish_reason":null}]}`
		}
		if !send(body) {
			return
		}
	}
	if chat {
		send(`"delta":{},"finish_reason":"` + finish + `"}]}`)
	} else {
		send(`"text":"","finish_reason":"` + finish + `"}]}`)
	}
	if usage {
		fmt.Fprintf(w, `data: {"id":%q,"object":%q,"created":%d,"model":%q,"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n",
			id, kind, created, model, promptTokens, n, promptTokens+n)
	}
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Server) whole(w http.ResponseWriter, ctx context.Context, chat bool, model string, n int, finish string) {
	if !sleep(ctx, s.cfg.FirstDelay+time.Duration(n)*s.cfg.Delay) {
		return
	}
	text := s.Text(n)
	choice := map[string]any{"index": 0, "finish_reason": finish}
	kind := "text_completion"
	if chat {
		choice["message"] = map[string]string{"role": "assistant", "content": text}
		kind = "chat.completion"
	} else {
		choice["text"] = text
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "stub", "object": kind, "created": time.Now().Unix(), "model": model,
		"choices": []any{choice},
		"usage":   map[string]int{"prompt_tokens": promptTokens, "completion_tokens": n, "total_tokens": promptTokens + n},
	})
}

// tool answers with one call of name, streamed in fragments or whole.
func (s *Server) tool(w http.ResponseWriter, ctx context.Context, model, name string, stream, usage bool) {
	n := len(toolFragments)
	fname, _ := json.Marshal(name)
	if !stream {
		if !sleep(ctx, s.cfg.FirstDelay+time.Duration(n)*s.cfg.Delay) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"stub","object":"chat.completion","created":%d,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":null,`+
			`"tool_calls":[{"id":%q,"type":"function","function":{"name":%s,"arguments":%q}}]},"finish_reason":"tool_calls"}],`+
			`"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n",
			time.Now().Unix(), model, ToolCallID, fname, ToolArguments, promptTokens, n, promptTokens+n)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	id := "stub-" + strconv.FormatInt(s.requests.Load(), 10)
	head := fmt.Sprintf(`data: {"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[{"index":0,`, id, time.Now().Unix(), model)
	send := func(body string) bool {
		if _, err := io.WriteString(w, head+body+"\n\n"); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	if !sleep(ctx, s.cfg.FirstDelay) {
		return
	}
	first := fmt.Sprintf(`"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":%q,"type":"function","function":{"name":%s,"arguments":""}}]},"finish_reason":null}]}`, ToolCallID, fname)
	if !send(first) {
		return
	}
	for _, frag := range toolFragments {
		if !sleep(ctx, s.cfg.Delay) {
			return
		}
		args, _ := json.Marshal(frag)
		if !send(`"delta":{"tool_calls":[{"index":0,"function":{"arguments":` + string(args) + `}}]},"finish_reason":null}]}`) {
			return
		}
	}
	send(`"delta":{},"finish_reason":"tool_calls"}]}`)
	if usage {
		fmt.Fprintf(w, `data: {"id":%q,"object":"chat.completion.chunk","created":%d,"model":%q,"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n",
			id, time.Now().Unix(), model, promptTokens, n, promptTokens+n)
	}
	_, _ = w.Write([]byte("data: [DONE]\n\n"))
	if flusher != nil {
		flusher.Flush()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeError(w http.ResponseWriter, code int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
}

// ListenAndServe serves the stub on addr until ctx is done.
func ListenAndServe(ctx context.Context, addr string, s *Server) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
