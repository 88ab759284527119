package completion

import (
	"fmt"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/gateway/adapter"
	"github.com/airlock-dev/airlock/pkg/echo"
	"github.com/airlock-dev/airlock/pkg/feature"
)

var validRoles = map[string]bool{"system": true, "user": true, "assistant": true, "tool": true}

// Per-field bounds, checked by checkBounds before anything else reads the
// request (documented in completion.proto). The content fields are bounded
// together by Limits.MaxPromptBytes, the message count by
// Limits.MaxMessages and the stop sequences in buildRequest.
const (
	maxFeatureLen  = 64
	maxRoleLen     = 16
	maxFileNameLen = 1024
	maxLanguageLen = 64
)

// checkBounds refuses a request with a field over its bound, with
// InvalidArgument naming the field, so no later check, log field or error
// message grows with what the caller sent.
func checkBounds(in input) error {
	over := func(field string, n, limit int) error {
		return invalid(fmt.Sprintf("%s: %d bytes, limit %d", field, n, limit))
	}
	if n := len(in.feature); n > maxFeatureLen {
		return over("feature", n, maxFeatureLen)
	}
	for i, m := range in.messages {
		if n := len(m.GetRole()); n > maxRoleLen {
			return over(fmt.Sprintf("messages[%d].role", i), n, maxRoleLen)
		}
	}
	if n := len(in.code.GetFileName()); n > maxFileNameLen {
		return over("code_context.file_name", n, maxFileNameLen)
	}
	if n := len(in.code.GetLanguage()); n > maxLanguageLen {
		return over("code_context.language", n, maxLanguageLen)
	}
	return checkToolBounds(in)
}

// buildRequest validates in against the limits and turns it into an adapter
// request. Every problem is InvalidArgument naming the field, or
// ResourceExhausted when a size limit is exceeded.
func (s *Service) buildRequest(f feature.Feature, in input) (*adapter.Request, error) {
	lim := s.cfg.Limits
	req := &adapter.Request{Feature: f}
	if len(in.messages) > lim.MaxMessages {
		return nil, tooLarge(fmt.Sprintf("too many messages: %d, limit %d", len(in.messages), lim.MaxMessages))
	}
	size := 0
	for i, m := range in.messages {
		if !validRoles[m.GetRole()] {
			return nil, invalid(fmt.Sprintf("messages[%d].role: %s is not one of system, user, assistant, tool", i, echo.Quote(m.GetRole())))
		}
		if !utf8.ValidString(m.GetContent()) {
			return nil, invalid(fmt.Sprintf("messages[%d].content: not valid UTF-8", i))
		}
		msg := adapter.Message{Role: m.GetRole(), Content: m.GetContent()}
		n, err := messageTools(i, m, &msg)
		if err != nil {
			return nil, err
		}
		size += len(m.GetContent()) + n
		req.Messages = append(req.Messages, msg)
	}
	n, err := buildTools(in, req)
	if err != nil {
		return nil, err
	}
	size += n
	if c := in.code; c != nil {
		size += len(c.GetContentAboveCursor()) + len(c.GetContentBelowCursor()) + len(c.GetFileName())
		req.Code = &adapter.CodeContext{FileName: c.GetFileName(), Above: c.GetContentAboveCursor(), Below: c.GetContentBelowCursor(), Language: c.GetLanguage()}
	}
	if size > lim.MaxPromptBytes {
		return nil, tooLarge(fmt.Sprintf("prompt too large: %d bytes, limit %d", size, lim.MaxPromptBytes))
	}
	switch {
	case f == feature.DuoChat && len(req.Messages) == 0:
		return nil, invalid("messages: duo_chat needs at least one message")
	case f.IsCode() && req.Code == nil && len(req.Messages) == 0:
		return nil, invalid(fmt.Sprintf("code_context: %s needs a code_context or messages", f))
	case req.Code != nil && req.Code.Above == "" && req.Code.Below == "" && len(req.Messages) == 0:
		return nil, invalid("code_context: content_above_cursor and content_below_cursor are both empty")
	}
	o := in.options
	req.MaxTokens = int(o.GetMaxTokens())
	if req.MaxTokens == 0 {
		req.MaxTokens = lim.DefaultMaxTokens
	}
	if req.MaxTokens > lim.MaxTokens {
		return nil, invalid(fmt.Sprintf("options.max_tokens: %d exceeds the limit %d", req.MaxTokens, lim.MaxTokens))
	}
	if o != nil && o.Temperature != nil {
		t := o.GetTemperature()
		if !(t >= 0 && t <= 2) { // also rejects NaN
			return nil, invalid(fmt.Sprintf("options.temperature: %v is outside [0, 2]", t))
		}
		req.Temperature = &t
	}
	if o != nil && o.TopP != nil {
		p := o.GetTopP()
		if !(p > 0 && p <= 1) {
			return nil, invalid(fmt.Sprintf("options.top_p: %v is outside (0, 1]", p))
		}
		req.TopP = &p
	}
	if n := len(o.GetStop()); n > 4 {
		return nil, invalid(fmt.Sprintf("options.stop: %d sequences, limit 4", n))
	}
	for i, st := range o.GetStop() {
		if st == "" || len(st) > 256 {
			return nil, invalid(fmt.Sprintf("options.stop[%d]: must be 1-256 bytes", i))
		}
	}
	req.Stop = o.GetStop()
	return req, nil
}
