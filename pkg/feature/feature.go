// Package feature names the AI features Airlock serves and the unit
// primitives (token scopes) that grant them. The issuer uses it to mint
// scopes and the gateway to check them, so both sides agree by construction.
package feature

import (
	"fmt"
	"sort"
	"strings"

	"github.com/airlock-dev/airlock/pkg/echo"
)

// Feature is an AI feature a caller asks for, named as GitLab names it.
type Feature string

// The features Airlock serves.
const (
	CodeCompletions Feature = "code_completions"
	CodeGenerations Feature = "code_generations"
	DuoChat         Feature = "duo_chat"
)

// Unit primitives: the values of a token's `scopes` claim.
const (
	ScopeCompleteCode = "complete_code"
	ScopeGenerateCode = "generate_code"
	ScopeDuoChat      = "duo_chat"
	// ScopeCodeSuggestions is the broader scope older GitLab versions mint;
	// it grants both code features.
	ScopeCodeSuggestions = "code_suggestions"
)

// All lists every feature in a stable order.
var All = []Feature{CodeCompletions, CodeGenerations, DuoChat}

// Parse returns the feature named s, or an error listing the valid names.
func Parse(s string) (Feature, error) {
	switch f := Feature(s); f {
	case CodeCompletions, CodeGenerations, DuoChat:
		return f, nil
	}
	if s == "" {
		return "", fmt.Errorf("feature is required: want one of %s", names())
	}
	return "", fmt.Errorf("unknown feature %s: want one of %s", echo.Quote(s), names())
}

// Scope returns the unit primitive that grants f.
func (f Feature) Scope() string {
	switch f {
	case CodeCompletions:
		return ScopeCompleteCode
	case CodeGenerations:
		return ScopeGenerateCode
	case DuoChat:
		return ScopeDuoChat
	}
	return ""
}

// IsCode reports whether f works on a code context (completion or generation).
func (f Feature) IsCode() bool { return f == CodeCompletions || f == CodeGenerations }

// Allowed reports whether a token with the given scopes may use f. The legacy
// code_suggestions scope covers both code features.
func (f Feature) Allowed(scopes []string) bool {
	want := f.Scope()
	if want == "" {
		return false
	}
	for _, s := range scopes {
		if s == want || (s == ScopeCodeSuggestions && f.IsCode()) {
			return true
		}
	}
	return false
}

// Scopes returns the unit primitives for fs, sorted and without duplicates.
func Scopes(fs []Feature) []string {
	seen := make(map[string]bool, len(fs))
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		if s := f.Scope(); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

func names() string {
	n := make([]string, len(All))
	for i, f := range All {
		n[i] = string(f)
	}
	return strings.Join(n, ", ")
}
