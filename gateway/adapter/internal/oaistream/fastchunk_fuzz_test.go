package oaistream

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter/adaptertest"
	"github.com/airlock-dev/airlock/gateway/adapter/internal/upstream"
)

// decodeStd decodes data the way the gateway did before the fast path:
// encoding/json into a chunk prepared as Decoder.reset prepares it.
func decodeStd(data []byte) (chunk, usage, error) {
	var c chunk
	u := usage{PromptTokens: unset, CompletionTokens: unset}
	c.Usage = &u
	err := json.Unmarshal(data, &c)
	return c, u, err
}

// sameChunk reports how a and b differ in any field the gateway reads ("" if
// they do not). ua and ub are the usage values their Usage pointers name.
func sameChunk(a, b *chunk, ua, ub usage) string {
	if len(a.Choices) != len(b.Choices) || (a.Choices == nil) != (b.Choices == nil) {
		return "choices"
	}
	for i := range a.Choices {
		if !reflect.DeepEqual(a.Choices[i], b.Choices[i]) {
			return "choice"
		}
	}
	if (a.Usage == nil) != (b.Usage == nil) || (a.Usage != nil && ua != ub) {
		return "usage"
	}
	if !bytes.Equal(a.Error, b.Error) || upstream.HasError(a.Error) != upstream.HasError(b.Error) {
		return "error"
	}
	return ""
}

// FuzzFastChunkMatchesStdlib holds the one-pass chunk decoder to
// encoding/json: whenever it accepts an input, encoding/json accepts it too
// and every field the gateway reads is the same; and the decoder the stream
// uses (fast path, else encoding/json) agrees with encoding/json on every
// input, errors included. The seed corpus holds every data line of the
// shared wire fixtures and of the tool-call stream fixture.
func FuzzFastChunkMatchesStdlib(f *testing.F) {
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"content":"Hel\u006co"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":[{"type":"text","text":"a"},{"type":"thinking","thinking":"b"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}`,
		`{"choices":[{"index":0,"text":"x","finish_reason":"length"}]}`,
		`{"error":{"message":"boom"}}`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"raw\ncontrol\"}}]}",
		`{"choices":[{"index":0,"delta":{"content":"\ud83d"}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"\ud83d\ude00 \ud83dx \udc00\ud83d"}}]}`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\xff\"}}]}",
		`{"choices":[{"index":0,"delta":{"content":"a"}}],"choices":[]}`,
		`{"choices":[{"index":1e400}]}`,
		`{"choices":[{"index":-0,"delta":{"content":12.5e-3}}],"usage":{"prompt_tokens":9223372036854775807}}`,
		`{"Choices":[{"Index":1}],"usage":null}`,
		`{"choices":null,"usage":{"completion_tokens":null}} `,
		`{"choices":[{"index":0,"delta":{"content":"\"\\\/\b\f\n\r\t"}}]}x`,
		`[]`, `null`, `{`, ``, `{"a":[1,{"b":[true,false,null]}]}`,
	} {
		f.Add([]byte(s))
	}
	for _, line := range fixtureDataLines(f) {
		f.Add(line)
	}
	tools, err := os.ReadFile(toolStreamFixture)
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(tools), "\n") {
		if line, ok := strings.CutPrefix(line, "data: {"); ok {
			f.Add([]byte("{" + line))
		}
	}
	for _, s := range []string{
		`{"choices":[{"index":0,"delta":{"content":"a","tool_calls":[]}}]}`,
		`{"choices":[{"index":0,"delta":{"content":"a","tool_calls":null}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[ ],"Tool_Calls":[{"index":0}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		std, stdU, stdErr := decodeStd(data)

		var p fastChunk
		var fast chunk
		fastU := usage{PromptTokens: unset, CompletionTokens: unset}
		fast.Usage = &fastU
		if p.decode(data, &fast) {
			if stdErr != nil {
				t.Fatalf("fast path accepted input encoding/json rejects (%v): %q", stdErr, data)
			}
			if d := sameChunk(&fast, &std, fastU, stdU); d != "" {
				t.Fatalf("fast path: %s differs from encoding/json for %q: %+v vs %+v", d, data, fast, std)
			}
		}

		d := NewDecoder(Chat)
		err := d.decodeChunk(data)
		if (err == nil) != (stdErr == nil) {
			t.Fatalf("decoder error %v, encoding/json error %v, for %q", err, stdErr, data)
		}
		if err == nil {
			if diff := sameChunk(&d.c, &std, d.u, stdU); diff != "" {
				t.Fatalf("decoder: %s differs from encoding/json for %q", diff, data)
			}
		}
	})
}

// fixtureDataLines returns the SSE data of every OpenAI-compatible (and
// every other JSON) line in the shared wire fixtures.
func fixtureDataLines(t testing.TB) [][]byte {
	dir := adaptertest.FixtureDir(t)
	bodies, err := filepath.Glob(filepath.Join(dir, "*.body"))
	if err != nil || len(bodies) == 0 {
		t.Fatalf("no fixture bodies in %s: %v", dir, err)
	}
	var out [][]byte
	for _, path := range bodies {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
			line = strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			if strings.HasPrefix(line, "{") {
				out = append(out, []byte(line))
			}
		}
	}
	return out
}

func TestFastPathTakesEveryFixtureChunk(t *testing.T) {
	// The fast path is only worth having if real chunks take it: every
	// OpenAI-style chunk without an error member or content parts must.
	n := 0
	for _, line := range fixtureDataLines(t) {
		if !bytes.Contains(line, []byte(`"choices"`)) || bytes.Contains(line, []byte(`"error"`)) || bytes.Contains(line, []byte(`"content":[`)) {
			continue
		}
		var p fastChunk
		var c chunk
		u := usage{PromptTokens: unset, CompletionTokens: unset}
		c.Usage = &u
		if !p.decode(line, &c) {
			t.Errorf("fast path handed back a fixture chunk: %s", line)
		}
		n++
	}
	if n < 20 {
		t.Fatalf("only %d fixture chunks checked", n)
	}
}
