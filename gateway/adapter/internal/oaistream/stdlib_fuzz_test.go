package oaistream

import (
	stdjson "encoding/json"
	"testing"
)

// FuzzChunkDecodingMatchesStdlib guards the switch to a faster JSON decoder:
// on any input, the chunk fields the gateway uses must decode to the same
// values as with encoding/json, and an input encoding/json rejects must not
// yield text.
func FuzzChunkDecodingMatchesStdlib(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"content":"Hel\u006co"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"a"},{"type":"thinking","thinking":"b"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}`,
		`{"error":{"message":"boom"}}`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw\ncontrol\"}}]}",
		`{"choices":[{"index":0,"delta":{"content":"\ud83d"}}]}`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xff\"}}]}",
		`{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[]}`,
		`{"choices":[{"index":1e400}]}`,
		`[]`, `null`, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, std chunk
		fastErr := decodeChunk(data, &fast)
		stdErr := stdjson.Unmarshal(data, &std)
		if stdErr != nil {
			if fastErr == nil && anyText(&fast) {
				t.Fatalf("fast decoder accepted input encoding/json rejects (%v) and found text: %q", stdErr, data)
			}
			return
		}
		if fastErr != nil {
			t.Fatalf("fast decoder rejects input encoding/json accepts: %v: %q", fastErr, data)
		}
		if len(fast.Choices) != len(std.Choices) {
			t.Fatalf("choices %d vs %d for %q", len(fast.Choices), len(std.Choices), data)
		}
		for i := range std.Choices {
			a, b := fast.Choices[i], std.Choices[i]
			if a.Index != b.Index || a.Delta.Content != b.Delta.Content || a.Text != b.Text || a.FinishReason != b.FinishReason {
				t.Fatalf("choice %d differs: %+v vs %+v for %q", i, a, b, data)
			}
		}
		if (fast.Usage == nil) != (std.Usage == nil) || (fast.Usage != nil && *fast.Usage != *std.Usage) {
			t.Fatalf("usage differs for %q", data)
		}
		if (len(fast.Error) == 0) != (len(std.Error) == 0) {
			t.Fatalf("error presence differs for %q", data)
		}
	})
}

func anyText(c *chunk) bool {
	for _, ch := range c.Choices {
		if ch.Delta.Content != "" || ch.Text != "" {
			return true
		}
	}
	return false
}
