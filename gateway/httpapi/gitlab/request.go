package gitlab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// Bounds the real gateway's request models declare.
const (
	maxContentChars   = 100000
	maxFileNameChars  = 255
	maxTelemetry      = 10
	maxContextItems   = 100
	maxComponents     = 100
	maxInstructionLen = 100000
)

type currentFile struct {
	FileName           string `json:"file_name"`
	LanguageIdentifier string `json:"language_identifier"`
	ContentAboveCursor string `json:"content_above_cursor"`
	ContentBelowCursor string `json:"content_below_cursor"`
}

type contextItem struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
}

type promptMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// codeBody is the flat body of /v2/code/completions, /v2/completions and
// /v2/code/generations. Unknown fields (intent, generation_type,
// user_instruction, ...) are ignored, as the real gateway ignores them.
type codeBody struct {
	flatModel
	CurrentFile   *currentFile      `json:"current_file"`
	PromptVersion *int              `json:"prompt_version"`
	Prompt        json.RawMessage   `json:"prompt"`
	PromptID      string            `json:"prompt_id"`
	Stream        bool              `json:"stream"`
	ProjectPath   string            `json:"project_path"`
	ProjectID     *int64            `json:"project_id"`
	ChoicesCount  *int              `json:"choices_count"`
	Context       []contextItem     `json:"context"`
	Telemetry     []json.RawMessage `json:"telemetry"`
}

// codeRequest is a parsed code request.
type codeRequest struct {
	in     completion.Input
	stream bool
	lang   string
	spec   modelSpec
}

// decode parses body into v: 422 when it is empty, not JSON, or a field
// has the wrong type (named).
func decode(body []byte, v any) *httpapi.Error {
	if len(bytes.TrimSpace(body)) == 0 {
		return unprocessable("the request body is empty: want a JSON object")
	}
	err := json.Unmarshal(body, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return unprocessable("%s: wrong type (%s)", strings.TrimPrefix(typeErr.Field, "flatModel."), typeErr.Value)
	case errors.As(err, &typeErr):
		return unprocessable("the request body must be a JSON object")
	}
	return unprocessable("the request body is not valid JSON")
}

func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || bytes.Equal(s, []byte("null"))
}

func checkChars(field, s string, limit int) *httpapi.Error {
	if len(s) > limit && utf8.RuneCountInString(s) > limit { // bytes >= runes: count only when it may matter
		return unprocessable("%s: at most %d characters", field, limit)
	}
	return nil
}

// checkFile validates a current_file (or a prompt component's payload).
func checkFile(prefix string, f *currentFile) *httpapi.Error {
	if e := checkChars(prefix+"file_name", f.FileName, maxFileNameChars); e != nil {
		return e
	}
	if e := checkChars(prefix+"content_above_cursor", f.ContentAboveCursor, maxContentChars); e != nil {
		return e
	}
	return checkChars(prefix+"content_below_cursor", f.ContentBelowCursor, maxContentChars)
}

// parseCode reads a /v2 flat body for feature f (code_completions or
// code_generations). prompt_version 1 carries no prompt; 2 a string
// (for generations, the instruction; for completions, the real gateway's
// pre-rendered prompt, which Airlock does not need: the model family's
// template is applied to current_file); 3 a list of messages, which go to
// the model before the file.
func parseCode(body []byte, f feature.Feature) (*codeRequest, *httpapi.Error) {
	var b codeBody
	if e := decode(body, &b); e != nil {
		return nil, e
	}
	if b.CurrentFile == nil {
		return nil, unprocessable("current_file: Field required")
	}
	if e := checkFile("current_file.", b.CurrentFile); e != nil {
		return nil, e
	}
	pv := 1
	if b.PromptVersion != nil {
		pv = *b.PromptVersion
	}
	if pv < 1 || pv > 3 {
		return nil, unprocessable("prompt_version: %d does not match any of the expected versions: 1, 2, 3", pv)
	}
	switch {
	case len(b.Telemetry) > maxTelemetry:
		return nil, unprocessable("telemetry: at most %d items", maxTelemetry)
	case len(b.Context) > maxContextItems:
		return nil, unprocessable("context: at most %d items", maxContextItems)
	case b.ChoicesCount != nil && (*b.ChoicesCount < 0 || *b.ChoicesCount > 10):
		return nil, unprocessable("choices_count: %d is outside [0, 10]", *b.ChoicesCount)
	}
	var msgs []*gatewayv1.Message
	switch pv {
	case 2:
		if !isNull(b.Prompt) {
			var p string
			if err := json.Unmarshal(b.Prompt, &p); err != nil {
				return nil, unprocessable("prompt: want a string with prompt_version 2")
			}
			if e := checkChars("prompt", p, maxInstructionLen); e != nil {
				return nil, e
			}
			if f == feature.CodeGenerations && strings.TrimSpace(p) != "" {
				msgs = append(msgs, &gatewayv1.Message{Role: "user", Content: p})
			}
		}
	case 3:
		var pm []promptMessage
		if isNull(b.Prompt) || json.Unmarshal(b.Prompt, &pm) != nil {
			return nil, unprocessable("prompt: want a list of {role, content} messages with prompt_version 3")
		}
		for _, m := range pm {
			msgs = append(msgs, &gatewayv1.Message{Role: m.Role, Content: m.Content})
		}
	}
	if m := contextMessage(b.Context); m != nil {
		msgs = append([]*gatewayv1.Message{m}, msgs...)
	}
	cf := b.CurrentFile
	return &codeRequest{
		in: completion.Input{Feature: string(f), Messages: msgs, Code: &gatewayv1.CodeContext{
			FileName: cf.FileName, ContentAboveCursor: cf.ContentAboveCursor, ContentBelowCursor: cf.ContentBelowCursor,
			Language: language(cf.LanguageIdentifier, cf.FileName)}},
		stream: b.Stream,
		lang:   language(cf.LanguageIdentifier, cf.FileName),
		spec:   b.spec(),
	}, nil
}

// contextMessage shows the project context items (open tabs, snippets)
// to chat models as one user message before the file. FIM templates use
// only the code around the cursor.
func contextMessage(items []contextItem) *gatewayv1.Message {
	var sb strings.Builder
	for _, it := range items {
		if strings.TrimSpace(it.Content) == "" {
			continue
		}
		if sb.Len() == 0 {
			sb.WriteString("Related code from the project, for reference:\n")
		}
		sb.WriteString("\n")
		if it.Name != "" {
			sb.WriteString(it.Type + " " + it.Name + ":\n")
		}
		fenced(&sb, it.Content)
	}
	if sb.Len() == 0 {
		return nil
	}
	return &gatewayv1.Message{Role: "user", Content: sb.String()}
}

// fenced writes s in a Markdown fence longer than any backtick run in s.
func fenced(sb *strings.Builder, s string) {
	run, best := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", max(3, best+1))
	sb.WriteString(fence + "\n" + s + "\n" + fence + "\n")
}

// componentsBody is the /v3/code/completions and /v4/code/suggestions
// body: prompt components plus the top-level model_metadata.
type componentsBody struct {
	PromptComponents []struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	} `json:"prompt_components"`
	ModelMetadata *modelMetadata `json:"model_metadata"`
	Stream        bool           `json:"stream"`
}

type editorPayload struct {
	currentFile
	Stream         *bool `json:"stream"`
	PromptEnhancer *struct {
		UserInstruction string `json:"user_instruction"`
	} `json:"prompt_enhancer"`
}

// Prompt component types.
const (
	componentGeneration = "code_editor_generation"
	componentCompletion = "code_editor_completion"
	componentContext    = "code_context"
)

// parseComponents reads a /v3 or /v4 body: exactly one editor component
// (its type picks the feature), any number of code_context components
// (accepted; their payloads are not used), nothing else.
func parseComponents(body []byte) (*codeRequest, *httpapi.Error) {
	var b componentsBody
	if e := decode(body, &b); e != nil {
		return nil, e
	}
	n := len(b.PromptComponents)
	if n == 0 || n > maxComponents {
		return nil, unprocessable("prompt_components: want 1 to %d components, got %d", maxComponents, n)
	}
	var req *codeRequest
	for i, c := range b.PromptComponents {
		field := fmt.Sprintf("prompt_components[%d]", i)
		var f feature.Feature
		switch c.Type {
		case componentContext:
			continue
		case componentGeneration:
			f = feature.CodeGenerations
		case componentCompletion:
			f = feature.CodeCompletions
		default:
			return nil, unprocessable("%s.type: %q is not one of %s, %s, %s", field, trimEcho(c.Type), componentCompletion, componentGeneration, componentContext)
		}
		if req != nil {
			return nil, unprocessable("%s: only one %s or %s component per request", field, componentCompletion, componentGeneration)
		}
		var p editorPayload
		if isNull(c.Payload) || json.Unmarshal(c.Payload, &p) != nil {
			return nil, unprocessable("%s.payload: want an object with file_name, content_above_cursor and content_below_cursor", field)
		}
		if e := checkFile(field+".payload.", &p.currentFile); e != nil {
			return nil, e
		}
		var msgs []*gatewayv1.Message
		if pe := p.PromptEnhancer; pe != nil && strings.TrimSpace(pe.UserInstruction) != "" {
			if e := checkChars(field+".payload.prompt_enhancer.user_instruction", pe.UserInstruction, maxInstructionLen); e != nil {
				return nil, e
			}
			msgs = append(msgs, &gatewayv1.Message{Role: "user", Content: pe.UserInstruction})
		}
		lang := language(p.LanguageIdentifier, p.FileName)
		stream := b.Stream
		if p.Stream != nil {
			stream = *p.Stream
		}
		req = &codeRequest{
			in: completion.Input{Feature: string(f), Messages: msgs, Code: &gatewayv1.CodeContext{
				FileName: p.FileName, ContentAboveCursor: p.ContentAboveCursor, ContentBelowCursor: p.ContentBelowCursor, Language: lang}},
			stream: stream, lang: lang, spec: b.ModelMetadata.spec(),
		}
	}
	if req == nil {
		return nil, unprocessable("prompt_components: want one %s or %s component", componentCompletion, componentGeneration)
	}
	return req, nil
}

// languages maps file extensions to the names the real gateway reports in
// model.lang.
var languages = map[string]string{
	".py": "python", ".rb": "ruby", ".go": "go", ".js": "js", ".jsx": "js", ".ts": "ts", ".tsx": "ts",
	".java": "java", ".kt": "kotlin", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
	".cs": "csharp", ".rs": "rust", ".php": "php", ".scala": "scala", ".swift": "swift", ".sh": "shell",
	".sql": "sql", ".vue": "vue", ".lua": "lua", ".hs": "haskell", ".ex": "elixir", ".tf": "terraform",
}

// language is the editor's language identifier when sent (bounded to a
// plain word), else the one the file's extension names, else "".
func language(identifier, fileName string) string {
	id := strings.ToLower(strings.TrimSpace(identifier))
	if id != "" && len(id) <= 32 && strings.IndexFunc(id, notWordRune) < 0 {
		return id
	}
	return languages[strings.ToLower(path.Ext(fileName))]
}

// notWordRune reports a rune outside language names (a-z, 0-9, - _ + #).
func notWordRune(r rune) bool {
	word := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-_+#", r)
	return !word
}
