package adaptertest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/gateway/adapter"
)

// ToolStream is what an adapter that takes tools (adapter.ToolTaker) gives
// the suite: a stream in its provider's wire format that answers with tool
// calls, and the calls it carries, assembled.
type ToolStream struct {
	Body  []byte
	Calls []adapter.ToolCall // by index; Arguments concatenated
}

// OpenAIToolStream is OpenAI's documented streaming tool-call format, the
// ToolStream of every OpenAI-compatible adapter. The fixture and its source
// are in gateway/adapter/internal/oaistream/testdata; the path is relative
// to an adapter package's directory, where its tests run.
func OpenAIToolStream(t *testing.T) *ToolStream {
	t.Helper()
	b, err := os.ReadFile("../internal/oaistream/testdata/openai_tool_calls_stream.sse")
	if err != nil {
		t.Fatal(err)
	}
	return &ToolStream{Body: b, Calls: []adapter.ToolCall{
		{ID: "call_DdmO9pD3xa9XTPNJ32zg2hcA", Name: "get_weather", Arguments: `{"location":"Paris, France"}`},
		{ID: "call_Xk2b9QZJp4fR0aT7mN3sLw8v", Name: "get_time", Arguments: `{"tz":"Europe/Paris"}`},
	}}
}

// toolRequest carries a tool, a named tool choice and a whole tool turn.
func (c *Config) toolRequest(endpoint string) *adapter.Request {
	req := c.request(endpoint)
	par := false
	req.Tools = []adapter.Tool{{Name: "get_weather", Description: "Weather of a city", Parameters: `{"type":"object"}`}}
	req.ToolChoice = &adapter.ToolChoice{Mode: adapter.ToolChoiceAuto}
	req.ParallelToolCalls = &par
	req.Messages = append(req.Messages,
		adapter.Message{Role: "assistant", ToolCalls: []adapter.ToolCall{{ID: "call_suite_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
		adapter.Message{Role: "tool", ToolCallID: "call_suite_1", Content: "-3C"},
		adapter.Message{Role: "user", Content: "And in Paris?"})
	return req
}

// tools checks the tool contract: an adapter that takes tools sends the
// request's tools and tool turns, and reports the stream's tool calls in
// order, whole or delivered a byte at a time. An adapter that does not is
// never given tools (the completion service routes around it).
func (h *harness) tools(t *testing.T) {
	a := h.adapter(t, adapter.Timeouts{Total: 10 * time.Second}, 0)
	tt, ok := a.(adapter.ToolTaker)
	if !ok || !tt.TakesTools() {
		if h.cfg.Tools != nil {
			t.Fatal("Config.Tools is set for an adapter that does not take tools")
		}
		t.Skip("the adapter takes no tools")
	}
	ts := h.cfg.Tools
	if ts == nil || len(ts.Calls) == 0 {
		t.Fatal("an adapter that takes tools must give the suite a ToolStream (Config.Tools)")
	}
	for _, step := range []int{len(ts.Body), 1} {
		var body string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			body = string(b)
			w.Header().Set("Content-Type", "text/event-stream")
			for rest := ts.Body; len(rest) > 0; {
				n := min(step, len(rest))
				_, _ = w.Write(rest[:n])
				w.(http.Flusher).Flush()
				rest = rest[n:]
			}
		}))
		var got []adapter.ToolCall
		var text strings.Builder
		res, err := a.Stream(context.Background(), h.cfg.toolRequest(h.cfg.endpoint(srv.URL)), func(d adapter.Delta) error {
			if d.Empty() {
				t.Error("empty delta emitted")
			}
			text.WriteString(d.Text)
			for _, c := range d.ToolCalls {
				for len(got) <= c.Index {
					got = append(got, adapter.ToolCall{})
				}
				g := &got[c.Index]
				if c.ID != "" {
					g.ID = c.ID
				}
				g.Name += c.Name
				g.Arguments += c.Arguments
			}
			return nil
		})
		srv.Close()
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if res.Finish != adapter.FinishToolCalls {
			t.Errorf("step %d: finish %q, want tool_calls", step, res.Finish)
		}
		if len(got) != len(ts.Calls) {
			t.Fatalf("step %d: calls %+v, want %+v", step, got, ts.Calls)
		}
		for i := range got {
			if got[i] != ts.Calls[i] {
				t.Errorf("step %d: call %d = %+v, want %+v", step, i, got[i], ts.Calls[i])
			}
		}
		for _, want := range []string{`"get_weather"`, `call_suite_1`, `-3C`, `Oslo`, `"type":"object"`} {
			if !strings.Contains(body, want) {
				t.Errorf("request body lacks %s: %s", want, body)
			}
		}
	}
}
