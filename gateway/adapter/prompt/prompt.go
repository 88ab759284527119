// Package prompt turns a normalized request into what a model reads: a
// fill-in-the-middle (FIM) prompt in the model family's own template for code
// completion, or chat messages built from the code context for everything
// else.
package prompt

import (
	"strings"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/pkg/feature"
	"github.com/airlock-dev/airlock/pkg/model"
)

// Cursor marks the caret in code shown to chat models.
const Cursor = "<CURSOR>"

// template is one family's FIM layout. The special tokens are the ones each
// model was trained with; a wrong byte makes the model see plain text.
type template struct {
	prefix, middle, suffix string // order: prefix+A+middle+B+suffix
	swapped                bool   // suffix section comes before the prefix (codestral)
	stop                   []string
}

// templates are keyed by pkg/model family names (a test checks each key).
var templates = map[string]template{
	// Codestral (Mistral FIM): [SUFFIX]{below}[PREFIX]{above}
	model.Codestral: {prefix: "[SUFFIX]", middle: "[PREFIX]", swapped: true},
	// Code Llama infilling: "<PRE> {above} <SUF>{below} <MID>", ends with <EOT>.
	model.CodeLlama: {prefix: "<PRE> ", middle: " <SUF>", suffix: " <MID>", stop: []string{"<EOT>"}},
	// DeepSeek Coder: full-width bars and U+2581 in the special tokens.
	model.DeepSeekCoder: {prefix: "<｜fim▁begin｜>", middle: "<｜fim▁hole｜>", suffix: "<｜fim▁end｜>"},
	// CodeGemma: stops at the next file separator.
	model.CodeGemma: {prefix: "<|fim_prefix|>", middle: "<|fim_suffix|>", suffix: "<|fim_middle|>", stop: []string{"<|file_separator|>"}},
	// Qwen2.5-Coder.
	model.Qwen: {prefix: "<|fim_prefix|>", middle: "<|fim_suffix|>", suffix: "<|fim_middle|>", stop: []string{"<|endoftext|>", "<|fim_pad|>"}},
}

// aliases maps spellings administrators use to the template names.
var aliases = map[string]string{
	"deepseek-coder": model.DeepSeekCoder, "deepseek_coder": model.DeepSeekCoder,
	"code-llama": model.CodeLlama, "code_llama": model.CodeLlama,
	"code-gemma": model.CodeGemma, "code_gemma": model.CodeGemma,
	"qwen-coder": model.Qwen, "qwen2.5-coder": model.Qwen, "qwen_coder": model.Qwen, "qwencoder": model.Qwen,
}

func lookup(family string) (template, bool) {
	f := strings.ToLower(strings.TrimSpace(family))
	if a, ok := aliases[f]; ok {
		f = a
	}
	t, ok := templates[f]
	return t, ok
}

// FIM returns the fill-in-the-middle prompt for family with the code above
// and below the cursor, and the stop sequences the template ends with. ok is
// false when the family has no known FIM template (callers then use Chat).
func FIM(family, above, below string) (text string, stop []string, ok bool) {
	t, ok := lookup(family)
	if !ok {
		return "", nil, false
	}
	var b strings.Builder
	b.Grow(len(t.prefix) + len(t.middle) + len(t.suffix) + len(above) + len(below))
	first, second := above, below
	if t.swapped {
		first, second = below, above
	}
	b.WriteString(t.prefix)
	b.WriteString(first)
	b.WriteString(t.middle)
	b.WriteString(second)
	b.WriteString(t.suffix)
	return b.String(), t.stop, true
}

// UseFIM reports whether req should be sent as a FIM text completion: a code
// completion with a code context for a family that has a template.
func UseFIM(req *adapter.Request) bool {
	if req.Feature != feature.CodeCompletions || req.Code == nil {
		return false
	}
	_, ok := lookup(req.Model.Family)
	return ok
}

// System prompts for code features sent to chat models.
const (
	systemCompletion = "You are a code completion engine. Reply with only the code that belongs at " + Cursor +
		" in the file below: no explanations, no Markdown fences, and do not repeat code that is already there."
	systemGeneration = "You are a code generation assistant. Write the code the user asks for, to be inserted at " +
		Cursor + " in the file below. Reply with only the code, without explanations or Markdown fences."
)

// Chat returns the chat messages for req. Without a code context (or for
// duo_chat) the caller's messages go through unchanged. For code features
// with a code context it prepends a system prompt, then the caller's own
// messages (instructions), then the file with a cursor marker.
func Chat(req *adapter.Request) []adapter.Message {
	if req.Code == nil || !req.Feature.IsCode() {
		return req.Messages
	}
	sys := systemCompletion
	if req.Feature == feature.CodeGenerations {
		sys = systemGeneration
	}
	msgs := make([]adapter.Message, 0, len(req.Messages)+2)
	msgs = append(msgs, adapter.Message{Role: "system", Content: sys})
	msgs = append(msgs, req.Messages...)
	msgs = append(msgs, adapter.Message{Role: "user", Content: codeBlock(req.Code)})
	return msgs
}

// codeBlock renders the file around the cursor in a Markdown fence longer
// than any backtick run inside the code, so the code cannot close it.
func codeBlock(c *adapter.CodeContext) string {
	code := c.Above + Cursor + c.Below
	fence := strings.Repeat("`", max(3, longestRun(code, '`')+1))
	var b strings.Builder
	b.Grow(len(code) + 2*len(fence) + len(c.FileName) + len(c.Language) + 32)
	if c.FileName != "" {
		b.WriteString("File: ")
		b.WriteString(c.FileName)
		b.WriteByte('\n')
	}
	b.WriteString(fence)
	b.WriteString(strings.ToLower(strings.Join(strings.Fields(c.Language), "")))
	b.WriteByte('\n')
	b.WriteString(code)
	b.WriteByte('\n')
	b.WriteString(fence)
	return b.String()
}

func longestRun(s string, c byte) int {
	best, cur := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// Plain flattens chat messages into one text prompt for servers that only
// take raw text (TGI /generate_stream): each turn on its own paragraph,
// labelled by role, ending with an open assistant turn.
func Plain(msgs []adapter.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		role := m.Role
		if role == "" {
			role = "user"
		}
		b.WriteString(strings.ToUpper(role[:1]))
		b.WriteString(role[1:])
		b.WriteString(": ")
		b.WriteString(m.Content)
		b.WriteString("\n\n")
	}
	b.WriteString("Assistant:")
	return b.String()
}
