package gitlab

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/airlock-dev/airlock/gateway/completion"
	"github.com/airlock-dev/airlock/gateway/httpapi"
	gatewayv1 "github.com/airlock-dev/airlock/pkg/api/airlock/gateway/v1"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// chatBody is the /v2/chat/agent body, as GitLab's ReAct executor sends it. Tool steps come
// in either form: options.agent_scratchpad (GitLab 17.x before ~17.10) or
// agent_scratchpad on an assistant message (later).
type chatBody struct {
	Messages []chatMessage `json:"messages"`
	Options  *struct {
		AgentScratchpad *struct {
			AgentType string      `json:"agent_type"`
			Steps     []agentStep `json:"steps"`
		} `json:"agent_scratchpad"`
	} `json:"options"`
	ModelMetadata        *modelMetadata `json:"model_metadata"`
	UnavailableResources []string       `json:"unavailable_resources"`
}

type chatMessage struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	Context *struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Content string `json:"content"`
	} `json:"context"`
	CurrentFile *struct {
		FilePath     string `json:"file_path"`
		Data         string `json:"data"`
		SelectedCode bool   `json:"selected_code"`
	} `json:"current_file"`
	AdditionalContext []struct {
		Category string `json:"category"`
		ID       string `json:"id"`
		Content  string `json:"content"`
	} `json:"additional_context"`
	ResourceContent *string         `json:"resource_content"`
	AgentScratchpad json.RawMessage `json:"agent_scratchpad"`
}

// agentStep is a legacy scratchpad step.
type agentStep struct {
	Thought     string          `json:"thought"`
	Tool        string          `json:"tool"`
	ToolInput   json.RawMessage `json:"tool_input"`
	Observation string          `json:"observation"`
}

// assistantStep is a step on an assistant message.
type assistantStep struct {
	Action struct {
		Thought   string          `json:"thought"`
		Tool      string          `json:"tool"`
		ToolInput json.RawMessage `json:"tool_input"`
	} `json:"action"`
	Observation string `json:"observation"`
}

// msgScratchpadRole is the real gateway's 400 for a scratchpad on a
// message that is not the assistant's.
const msgScratchpadRole = "agent_scratchpad can only be present when role is ASSISTANT"

type chatRequest struct {
	in   completion.Input
	spec modelSpec
}

// parseChat turns the conversation into chat messages: each user message
// carries its context, open file and additional context as text after the
// question; scratchpad steps are shown as text on the assistant turn they
// belong to (the legacy form, after the last message).
func parseChat(body []byte) (*chatRequest, *httpapi.Error) {
	var b chatBody
	if e := decode(body, &b); e != nil {
		return nil, e
	}
	if len(b.Messages) == 0 {
		return nil, unprocessable("messages: at least 1 message is required")
	}
	msgs := make([]*gatewayv1.Message, 0, len(b.Messages)+1)
	for i, m := range b.Messages {
		role := strings.ToLower(m.Role)
		switch role {
		case "user", "assistant", "system":
		default:
			return nil, unprocessable("messages[%d].role: %q is not one of user, assistant, system", i, trimEcho(m.Role))
		}
		var sb strings.Builder
		if m.Content != nil {
			sb.WriteString(*m.Content)
		}
		if !isNull(m.AgentScratchpad) {
			if role != "assistant" {
				return nil, &httpapi.Error{Status: http.StatusBadRequest, Message: msgScratchpadRole}
			}
			var steps []assistantStep
			if err := json.Unmarshal(m.AgentScratchpad, &steps); err != nil {
				return nil, unprocessable("messages[%d].agent_scratchpad: want a list of {action, observation} steps", i)
			}
			for _, s := range steps {
				writeStep(&sb, s.Action.Thought, s.Action.Tool, s.Action.ToolInput, s.Observation)
			}
		}
		if m.ResourceContent != nil && *m.ResourceContent != "" {
			sb.WriteString("\n\nResource:\n")
			fenced(&sb, *m.ResourceContent)
		}
		if c := m.Context; c != nil && (c.Content != "" || c.Title != "") {
			fmt.Fprintf(&sb, "\n\nThe question is about this %s", strings.ReplaceAll(c.Type, "_", " "))
			if c.Title != "" {
				fmt.Fprintf(&sb, " (%s)", c.Title)
			}
			sb.WriteString(":\n")
			fenced(&sb, c.Content)
		}
		if f := m.CurrentFile; f != nil && f.Data != "" {
			if f.SelectedCode {
				fmt.Fprintf(&sb, "\n\nThe user selected this code in %s:\n", f.FilePath)
			} else {
				fmt.Fprintf(&sb, "\n\nThe user has %s open:\n", f.FilePath)
			}
			fenced(&sb, f.Data)
		}
		for _, ac := range m.AdditionalContext {
			if ac.Content == "" {
				continue
			}
			fmt.Fprintf(&sb, "\n\nAdditional context (%s %s):\n", ac.Category, ac.ID)
			fenced(&sb, ac.Content)
		}
		text := strings.TrimSpace(sb.String())
		if text == "" && role == "assistant" {
			continue // a turn that was only a tool call Airlock never made
		}
		msgs = append(msgs, &gatewayv1.Message{Role: role, Content: text})
	}
	if o := b.Options; o != nil && o.AgentScratchpad != nil && len(o.AgentScratchpad.Steps) > 0 {
		var sb strings.Builder
		for _, s := range o.AgentScratchpad.Steps {
			writeStep(&sb, s.Thought, s.Tool, s.ToolInput, s.Observation)
		}
		msgs = append(msgs, &gatewayv1.Message{Role: "assistant", Content: strings.TrimSpace(sb.String())})
	}
	return &chatRequest{in: completion.Input{Feature: string(feature.DuoChat), Messages: msgs}, spec: b.ModelMetadata.spec()}, nil
}

func writeStep(sb *strings.Builder, thought, tool string, input json.RawMessage, observation string) {
	if thought != "" {
		sb.WriteString("\nThought: " + thought)
	}
	if tool != "" {
		sb.WriteString("\nAction: " + tool)
		if !isNull(input) {
			sb.WriteString("\nAction input: " + string(input))
		}
	}
	if observation != "" {
		sb.WriteString("\nObservation: " + observation)
	}
}
