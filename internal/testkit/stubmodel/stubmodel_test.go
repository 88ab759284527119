package stubmodel

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type chunk struct {
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// replay posts body and decodes the SSE answer into text, finish and usage.
func replay(t *testing.T, url, body string) (text, finish string, completion int, done bool) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("unexpected line %q", line)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if c.Usage != nil {
			completion = c.Usage.CompletionTokens
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				text += *ch.Delta.Content
			}
			if ch.Text != nil {
				text += *ch.Text
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return text, finish, completion, done
}

func TestStreams(t *testing.T) {
	s := New(Config{Tokens: 5})
	srv := httptest.NewServer(s)
	defer srv.Close()
	tests := []struct {
		name, path, body string
		wantText         string
		wantFinish       string
		wantUsage        int
	}{
		{"chat runs to its token count", "/v1/chat/completions",
			`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`,
			s.Text(5), "stop", 5},
		{"max_tokens caps with finish length", "/v1/chat/completions",
			`{"model":"m","stream":true,"max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`,
			s.Text(2), "length", 0},
		{"text completions", "/v1/completions",
			`{"model":"m","stream":true,"prompt":"x","stream_options":{"include_usage":true}}`,
			s.Text(5), "stop", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, finish, usage, done := replay(t, srv.URL+tt.path, tt.body)
			if text != tt.wantText || finish != tt.wantFinish || usage != tt.wantUsage || !done {
				t.Fatalf("got %q %q %d done=%v; want %q %q %d done", text, finish, usage, done, tt.wantText, tt.wantFinish, tt.wantUsage)
			}
		})
	}
	if !strings.HasPrefix(s.Text(3), "Hello from the") {
		t.Fatalf("Text(3) = %q", s.Text(3))
	}
}

func TestRejectsBadRequests(t *testing.T) {
	srv := httptest.NewServer(New(Config{APIKey: "k1"}))
	defer srv.Close()
	tests := []struct {
		name, auth, body string
		want             int
	}{
		{"missing key", "", `{"messages":[{}]}`, 401},
		{"wrong key", "Bearer k2", `{"messages":[{}]}`, 401},
		{"bad json", "Bearer k1", `{`, 400},
		{"no messages", "Bearer k1", `{"stream":true}`, 400},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions", strings.NewReader(tt.body))
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

func TestServesTheLastRequestBody(t *testing.T) {
	srv := httptest.NewServer(New(Config{Tokens: 2}))
	defer srv.Close()
	get := func() string {
		resp, err := http.Get(srv.URL + "/debug/last-request")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		if _, err := io.Copy(&b, resp.Body); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	if got := get(); got != "" {
		t.Fatalf("before any request: %q, want empty", got)
	}
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"first"}]}`
	replay(t, srv.URL+"/v1/chat/completions", body)
	if got := get(); got != body {
		t.Fatalf("last request = %q, want %q", got, body)
	}
}
