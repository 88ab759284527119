package oaistream

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

func TestAppendBodyMatchesEncodingJSON(t *testing.T) {
	temp, tiny, big, topP := float32(0.7), float32(1e-7), float32(3e21), float32(1)
	prompt := "<fim_prefix>a & b\u2028\xff</fim_prefix>"
	tests := []struct {
		name string
		b    body
	}{
		{"chat with every option", body{Model: "m", Messages: []message{{Role: "system", Content: "be \"brief\"\n\t\\"}, {Role: "user", Content: "héllo <b>\x00\x1f\u2029"}},
			Stream: true, StreamOptions: &streamOptions{IncludeUsage: true}, MaxTokens: 128, Temperature: &temp, TopP: &topP, Stop: []string{"\n\n", "</s>"}}},
		{"text completion", body{Model: "m", Prompt: &prompt, Stream: true, Temperature: &tiny, TopP: &big}},
		{"empty", body{}},
		{"negative max tokens", body{MaxTokens: -1}},
		{"empty prompt and stop list", body{Prompt: new(string), Stop: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(&tt.b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendBody(nil, &tt.b)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("got %s (%v)\nwant %s", got, err, want)
			}
		})
	}
}

func TestAppendBodyRefusesNaNAndInfinity(t *testing.T) {
	for _, f := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		if _, err := appendBody(nil, &body{TopP: &f}); err == nil {
			t.Errorf("%v: encoded, want an error", f)
		}
	}
}

func FuzzAppendBodyMatchesEncodingJSON(f *testing.F) {
	f.Add("m", "user", "héllo <b>\n", "stop", float32(0.7), 12, true)
	f.Add("", "", "\xff\u2028&", "", float32(1e-9), 0, false)
	f.Fuzz(func(t *testing.T, model, role, text, stop string, x float32, maxTokens int, chat bool) {
		b := body{Model: model, Stream: true, MaxTokens: maxTokens, Temperature: &x, Stop: []string{stop}}
		if chat {
			b.Messages = []message{{Role: role, Content: text}}
		} else {
			b.Prompt = &text
		}
		want, wantErr := json.Marshal(&b)
		got, err := appendBody(nil, &b)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
		}
	})
}
