package prompt_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/gateway/adapter/prompt"
	"github.com/airlock-dev/airlock/pkg/feature"
)

func TestFIMTemplates(t *testing.T) {
	const above, below = "def add(a, b):\n    ", "\n\nprint(add(1, 2))"
	tests := []struct {
		family string
		want   string
	}{
		{"codestral", "[SUFFIX]" + below + "[PREFIX]" + above},
		{"codellama", "<PRE> " + above + " <SUF>" + below + " <MID>"},
		{"deepseekcoder", "<｜fim▁begin｜>" + above + "<｜fim▁hole｜>" + below + "<｜fim▁end｜>"},
		{"deepseek-coder", "<｜fim▁begin｜>" + above + "<｜fim▁hole｜>" + below + "<｜fim▁end｜>"},
		{"codegemma", "<|fim_prefix|>" + above + "<|fim_suffix|>" + below + "<|fim_middle|>"},
		{"qwen", "<|fim_prefix|>" + above + "<|fim_suffix|>" + below + "<|fim_middle|>"},
		{" CodeLlama ", "<PRE> " + above + " <SUF>" + below + " <MID>"},
	}
	for _, tt := range tests {
		t.Run(tt.family, func(t *testing.T) {
			got, _, ok := prompt.FIM(tt.family, above, below)
			if !ok || got != tt.want {
				t.Fatalf("FIM(%q) = %q, %v; want %q", tt.family, got, ok, tt.want)
			}
		})
	}
}

func TestFIMUnknownFamilyHasNoTemplate(t *testing.T) {
	for _, f := range []string{"mistral", "llama3", "gpt", "claude_3", "general", ""} {
		if _, _, ok := prompt.FIM(f, "a", "b"); ok {
			t.Errorf("FIM(%q) ok, want no template", f)
		}
	}
}

func TestUseFIM(t *testing.T) {
	code := &adapter.CodeContext{Above: "a", Below: "b"}
	tests := []struct {
		name string
		req  adapter.Request
		want bool
	}{
		{"code completion with template", adapter.Request{Feature: feature.CodeCompletions, Code: code, Model: adapter.Model{Family: "codestral"}}, true},
		{"code completion, unknown family", adapter.Request{Feature: feature.CodeCompletions, Code: code, Model: adapter.Model{Family: "mistral"}}, false},
		{"code completion without code", adapter.Request{Feature: feature.CodeCompletions, Model: adapter.Model{Family: "codestral"}}, false},
		{"code generation uses chat", adapter.Request{Feature: feature.CodeGenerations, Code: code, Model: adapter.Model{Family: "codestral"}}, false},
		{"duo chat uses chat", adapter.Request{Feature: feature.DuoChat, Code: code, Model: adapter.Model{Family: "codestral"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := prompt.UseFIM(&tt.req); got != tt.want {
				t.Fatalf("UseFIM = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestChatPassesCallerMessagesThroughWithoutCode(t *testing.T) {
	msgs := []adapter.Message{{Role: "system", Content: "s"}, {Role: "user", Content: "u"}}
	got := prompt.Chat(&adapter.Request{Feature: feature.DuoChat, Messages: msgs, Code: &adapter.CodeContext{Above: "x"}})
	if len(got) != 2 || !reflect.DeepEqual(got, msgs) {
		t.Fatalf("Chat = %+v, want the caller's messages unchanged", got)
	}
}

func TestChatBuildsCodePromptWithCursor(t *testing.T) {
	req := &adapter.Request{
		Feature:  feature.CodeGenerations,
		Messages: []adapter.Message{{Role: "user", Content: "add a sum function"}},
		Code:     &adapter.CodeContext{FileName: "main.go", Language: "Go", Above: "package main\n", Below: "\nfunc main() {}\n"},
	}
	got := prompt.Chat(req)
	if len(got) != 3 || got[0].Role != "system" || !reflect.DeepEqual(got[1], req.Messages[0]) || got[2].Role != "user" {
		t.Fatalf("Chat roles = %+v, want system, caller's message, code", got)
	}
	code := got[2].Content
	for _, want := range []string{"File: main.go", "```go\n", "package main\n" + prompt.Cursor + "\nfunc main() {}\n"} {
		if !strings.Contains(code, want) {
			t.Errorf("code message %q lacks %q", code, want)
		}
	}
}

func TestChatFenceOutgrowsBackticksInCode(t *testing.T) {
	req := &adapter.Request{Feature: feature.CodeCompletions, Code: &adapter.CodeContext{Above: "s := `x` + \"````\"\n"}}
	code := prompt.Chat(req)[1].Content
	if !strings.HasPrefix(code, "`````\n") || !strings.HasSuffix(code, "\n`````") {
		t.Fatalf("code block %q is not fenced by 5 backticks", code)
	}
}

func TestPlainFlattensTurns(t *testing.T) {
	got := prompt.Plain([]adapter.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}})
	if want := "System: be brief\n\nUser: hi\n\nAssistant:"; got != want {
		t.Fatalf("Plain = %q, want %q", got, want)
	}
}
