package gitlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/gateway/auth"
	"github.com/airlock-dev/airlock/gateway/catalog"
	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// engine names the gateway in model.engine.
const engine = "airlock"

type modelInfo struct {
	Engine string `json:"engine"`
	Name   string `json:"name"`
	Lang   string `json:"lang"`
}

type choice struct {
	Text         string `json:"text"`
	Index        int    `json:"index"`
	FinishReason string `json:"finish_reason"`
}

// v2Answer is the non-streamed answer of the /v2 code routes.
type v2Answer struct {
	ID          string     `json:"id"`
	Model       modelInfo  `json:"model"`
	Experiments []struct{} `json:"experiments"`
	Object      string     `json:"object"`
	Created     int64      `json:"created"`
	Choices     []choice   `json:"choices"`
}

type v3Metadata struct {
	Model     modelInfo `json:"model"`
	Timestamp int64     `json:"timestamp"`
}

// v3Answer is the non-streamed answer of /v3 and /v4.
type v3Answer struct {
	Choices  []choice   `json:"choices"`
	Model    modelInfo  `json:"model"`
	Metadata v3Metadata `json:"metadata"`
}

func finishReason(f gatewayv1.FinishReason) string {
	switch f {
	case gatewayv1.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case gatewayv1.FinishReason_FINISH_REASON_CONTENT_FILTER:
		return "content_filter"
	}
	return "stop"
}

// choices is one choice, or none for an empty answer (GitLab's health
// probe reads a blank first choice as a failure, so none is the honest
// answer).
func choices(text string, done *gatewayv1.CompletionDone) []choice {
	if text == "" {
		return []choice{}
	}
	return []choice{{Text: text, FinishReason: finishReason(done.GetFinishReason())}}
}

// codeShape is how a code route answers.
type codeShape int

const (
	shapeV2 codeShape = iota // flat JSON; raw text stream
	shapeV3                  // JSON with metadata; raw text stream
	shapeV4                  // JSON with metadata; SSE events
)

func (h *handlers) v2Completions(w http.ResponseWriter, r *http.Request) {
	h.flat(w, r, feature.CodeCompletions)
}

func (h *handlers) v2Generations(w http.ResponseWriter, r *http.Request) {
	h.flat(w, r, feature.CodeGenerations)
}

func (h *handlers) flat(w http.ResponseWriter, r *http.Request, f feature.Feature) {
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req, herr := parseCode(body, f)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	h.code(w, r, req, shapeV2)
}

func (h *handlers) v3Completions(w http.ResponseWriter, r *http.Request) { h.components(w, r, shapeV3) }

func (h *handlers) v4Suggestions(w http.ResponseWriter, r *http.Request) { h.components(w, r, shapeV4) }

func (h *handlers) components(w http.ResponseWriter, r *http.Request, s codeShape) {
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req, herr := parseComponents(body)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	h.code(w, r, req, s)
}

// targets applies the request-model policy to spec: the vetted
// request-supplied model, or nil for the catalog's.
func (h *handlers) targets(ctx context.Context, spec modelSpec) ([]catalog.Target, *httpapi.Error) {
	t, ignored, e := h.models.target(spec)
	if e != nil {
		return nil, e
	}
	if ignored {
		h.ignoredOnce.Do(func() {
			h.log.Warn().Str("model_provider", trimEcho(spec.provider)).Str("model_name", trimEcho(spec.name)).
				Str("model_identifier", trimEcho(spec.identifier)).Bool("model_endpoint_sent", spec.endpoint != "").
				Msg("requests name a model; ignored (the catalog's model answers): start the gateway with --allow-request-models and --request-model-networks to honour them (logged once)")
		})
		return nil, nil
	}
	if t == nil {
		return nil, nil
	}
	logging.AddFields(ctx, logging.Fields{"request_model", t.Model.Identifier})
	return []catalog.Target{*t}, nil
}

// code answers a code request, whole or streamed in the route's framing.
func (h *handlers) code(w http.ResponseWriter, r *http.Request, req *codeRequest, s codeShape) {
	ctx := r.Context()
	ts, herr := h.targets(ctx, req.spec)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req.in.Targets = ts
	now := h.now()
	info := modelInfo{Engine: engine, Lang: req.lang}
	if len(ts) > 0 {
		info.Name = ts[0].Model.Name // known before the stream starts
	}
	if !req.stream {
		var b strings.Builder
		done, err := h.c.Serve(ctx, req.in, textOnly(func(t string) error { b.WriteString(t); return nil }))
		if err != nil {
			writeError(w, r, failure(err))
			return
		}
		info.Name = done.GetModel()
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.writeTimeout))
		if s == shapeV2 {
			writeJSON(w, http.StatusOK, v2Answer{ID: httpapi.RequestID(ctx), Model: info, Experiments: []struct{}{},
				Object: "text_completion", Created: now.Unix(), Choices: choices(b.String(), done)})
			return
		}
		writeJSON(w, http.StatusOK, v3Answer{Choices: choices(b.String(), done), Model: info, Metadata: v3Metadata{Model: info, Timestamp: now.Unix()}})
		return
	}
	if s == shapeV4 {
		h.sse(w, r, req, info, now)
		return
	}
	// Raw text: the content type says event-stream, the body is the text
	// itself, the end is the connection's (the real gateway's framing).
	st := httpapi.NewStream(w, func(hd http.Header) { hd.Set("Content-Type", "text/event-stream; charset=utf-8") })
	_, err := h.c.ServeStream(ctx, req.in, textOnly(func(t string) error { return st.Write([]byte(t)) }))
	if err != nil {
		h.endStream(ctx, w, r, st, err)
		return
	}
	_ = st.Write(nil) // an empty answer still gets its status and headers
}

// endStream ends a code stream after the core failed: before the first
// byte, with the error answer; after, the stream just ends early (the
// real gateway's framings have no error unit).
func (h *handlers) endStream(ctx context.Context, w http.ResponseWriter, r *http.Request, st *httpapi.Stream, err error) {
	st.Fail(ctx, func(started bool, _ func([]byte) error) {
		if !started {
			writeError(w, r, failure(err))
			return
		}
		logging.AddFields(ctx, logging.Fields{"stream_error", httpapi.FromStatus(err).Message})
	})
}

// sseEvent is one SSE event: the event line before the data line.
func sseEvent(name string, data any) []byte {
	b, err := json.Marshal(data)
	if err != nil {
		b = []byte("null")
	}
	return []byte("event: " + name + "\ndata: " + string(b) + "\n\n")
}

type contentChunk struct {
	Choices [1]struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		Index int `json:"index"`
	} `json:"choices"`
}

// sse answers /v4/code/suggestions with stream: stream_start (written
// with the first text, so a failure before it still gets an error
// status), content_chunk events, stream_end.
func (h *handlers) sse(w http.ResponseWriter, r *http.Request, req *codeRequest, info modelInfo, now time.Time) {
	ctx := r.Context()
	st := httpapi.NewStream(w, func(hd http.Header) {
		hd.Set("Content-Type", "text/event-stream; charset=utf-8")
		hd.Set("X-Streaming-Format", "sse")
	})
	start := sseEvent("stream_start", struct {
		Metadata v3Metadata `json:"metadata"`
	}{v3Metadata{Model: info, Timestamp: now.Unix()}})
	first := true
	var chunk contentChunk
	_, err := h.c.ServeStream(ctx, req.in, textOnly(func(t string) error {
		chunk.Choices[0].Delta.Content = t
		ev := sseEvent("content_chunk", chunk)
		if first {
			first = false
			ev = append(start, ev...)
		}
		return st.Write(ev)
	}))
	if err != nil {
		h.endStream(ctx, w, r, st, err)
		return
	}
	end := sseEvent("stream_end", nil)
	if first {
		end = append(start, end...)
	}
	_ = st.Write(end)
}

// chat answers /v2/chat/agent as NDJSON, one event per line, each line
// written and flushed whole: final_answer_delta events, the last with a
// finish_reason, then usage. A model failure is an error event (in a 200
// stream, as the real gateway's agent reports it); a refusal of the
// request or the caller before any byte keeps its HTTP status.
func (h *handlers) chatAgent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req, herr := parseChat(body)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	ts, herr := h.targets(ctx, req.spec)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	req.in.Targets = ts
	st := httpapi.NewStream(w, func(hd http.Header) { hd.Set("Content-Type", "application/x-ndjson; charset=utf-8") })
	type deltaData struct {
		Text         string `json:"text"`
		FinishReason string `json:"finish_reason,omitempty"`
	}
	type event struct {
		Type string `json:"type"`
		Data any    `json:"data"`
	}
	line := func(v event) []byte {
		b, _ := json.Marshal(v) // strings and numbers always encode
		return append(b, '\n')
	}
	done, err := h.c.ServeStream(ctx, req.in, textOnly(func(t string) error {
		return st.Write(line(event{"final_answer_delta", deltaData{Text: t}}))
	}))
	if err != nil {
		st.Fail(ctx, func(started bool, write func([]byte) error) {
			_, model := completion.ModelFailure(err)
			if !started && !model {
				writeError(w, r, failure(err))
				return
			}
			e := httpapi.FromStatus(err)
			logging.AddFields(ctx, logging.Fields{"stream_error", e.Message})
			code := status.Code(err)
			retryable := code == codes.Unavailable || code == codes.ResourceExhausted || code == codes.DeadlineExceeded
			_ = write(line(event{"error", struct {
				Message   string `json:"message"`
				Retryable bool   `json:"retryable"`
			}{e.Message, retryable}}))
		})
		return
	}
	u := done.GetUsage()
	_ = st.Write(append(line(event{"final_answer_delta", deltaData{FinishReason: finishReason(done.GetFinishReason())}}),
		line(event{"usage", map[string]any{"usage": map[string]any{done.GetModel(): map[string]uint32{
			"input_tokens": u.GetPromptTokens(), "output_tokens": u.GetCompletionTokens()}}}})...))
}

// checkPrompt is the minimal call "Test connection" makes.
const checkPrompt = "Reply with the single word OK."

// modelCheck answers the admin's "Test connection": a minimal call to the
// model in model_metadata (when request-supplied models are allowed; else
// to the catalog's model for a feature the token grants). 200 with the
// model's text as a JSON string on success; 421 "<code>: <reason>" when
// the model server answered an HTTP error; otherwise the core's precise
// message (an administrator is reading it).
func (h *handlers) modelCheck(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, herr := httpapi.ReadBody(w, r)
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	var b struct {
		ModelMetadata *modelMetadata `json:"model_metadata"`
	}
	if e := decode(body, &b); e != nil {
		writeError(w, r, e)
		return
	}
	ts, herr := h.targets(ctx, b.ModelMetadata.spec())
	if herr != nil {
		writeError(w, r, herr)
		return
	}
	id, _ := auth.IdentityFrom(ctx)
	var f feature.Feature
	for _, c := range []feature.Feature{feature.DuoChat, feature.CodeGenerations, feature.CodeCompletions} {
		if id != nil && c.Allowed(id.Scopes) {
			f = c
			break
		}
	}
	if f == "" {
		writeError(w, r, &httpapi.Error{Status: http.StatusForbidden, Message: "Unauthorized to access 'model_configuration/check'"})
		return
	}
	in := completion.Input{Feature: string(f), Targets: ts, Options: &gatewayv1.GenerationOptions{MaxTokens: 8},
		Messages: []*gatewayv1.Message{{Role: "user", Content: checkPrompt}}}
	var sb strings.Builder
	_, err := h.c.Serve(ctx, in, textOnly(func(t string) error { sb.WriteString(t); return nil }))
	if err != nil {
		code, model := completion.ModelFailure(err)
		switch {
		case model && code >= 400:
			writeError(w, r, &httpapi.Error{Status: http.StatusMisdirectedRequest, Message: fmt.Sprintf("%d: %s", code, http.StatusText(code))})
		case model:
			writeError(w, r, httpapi.FromStatus(err)) // no HTTP answer: say why
		default:
			writeError(w, r, failure(err))
		}
		return
	}
	writeJSON(w, http.StatusOK, sb.String())
}
