package openai

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzParseChatTools feeds chat bodies with tool fields to the parser: it
// never panics, every refusal is a 400 (or 404 for the model) whose message
// starts with the field it names, and an accepted body's tools, tool choice
// and tool turns reach the core's input.
func FuzzParseChatTools(f *testing.F) {
	for _, s := range []string{
		toolBody(""),
		toolBody(`,"tool_choice":{"type":"function","function":{"name":"get_weather"}},"parallel_tool_calls":true`),
		toolBody(`,"tool_choice":"required"`),
		`{"model":"duo_chat","messages":[{"role":"user","content":"x"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}]}`,
		`{"model":"duo_chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":7}}]}`,
		`{"model":"duo_chat","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":null,"strict":false}}],"tool_choice":"none"}`,
		`{"model":"duo_chat","messages":[{"role":"user","content":"x"}],"tools":{}}`,
		`{"model":"duo_chat","messages":[{"role":"assistant","tool_calls":[{"type":"function"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := parseChat(body)
		if e != nil {
			if e.Status != http.StatusBadRequest && e.Status != http.StatusNotFound {
				t.Fatalf("status %d for %q", e.Status, body)
			}
			if e.Message == "" || (e.Param != "" && !strings.HasPrefix(e.Message, e.Param+": ") && e.Status == http.StatusBadRequest) {
				t.Fatalf("error %+v does not name its field first", e)
			}
			return
		}
		in := req.in
		if len(in.Tools) == 0 && (in.ParallelToolCalls != nil || (in.ToolChoice != nil && (in.ToolChoice.GetMode() == "none" || in.ToolChoice.GetMode() == "auto"))) {
			t.Fatalf("neutral tool fields without tools reached the core: %+v", in)
		}
		for _, tool := range in.Tools {
			if p := tool.GetParametersJson(); p != "" && p[0] != '{' {
				t.Fatalf("parameters %q are not an object", p)
			}
		}
	})
}
