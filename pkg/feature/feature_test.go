package feature

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    Feature
		wantErr string
	}{
		{in: "code_completions", want: CodeCompletions},
		{in: "code_generations", want: CodeGenerations},
		{in: "duo_chat", want: DuoChat},
		{in: "", wantErr: "feature is required: want one of code_completions, code_generations, duo_chat"},
		{in: "chat", wantErr: `unknown feature "chat": want one of code_completions, code_generations, duo_chat`},
		{in: "DUO_CHAT", wantErr: `unknown feature "DUO_CHAT": want one of code_completions, code_generations, duo_chat`},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Parse(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestAllowed(t *testing.T) {
	tests := []struct {
		name   string
		f      Feature
		scopes []string
		want   bool
	}{
		{"exact scope", CodeCompletions, []string{"complete_code"}, true},
		{"other scope only", CodeCompletions, []string{"duo_chat"}, false},
		{"no scopes", DuoChat, nil, false},
		{"legacy scope covers completions", CodeCompletions, []string{"code_suggestions"}, true},
		{"legacy scope covers generations", CodeGenerations, []string{"code_suggestions"}, true},
		{"legacy scope does not cover chat", DuoChat, []string{"code_suggestions"}, false},
		{"unknown feature never allowed", Feature("x"), []string{"x", ""}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Allowed(tt.scopes); got != tt.want {
			t.Errorf("%s: Allowed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestScopesSortedUnique(t *testing.T) {
	got := Scopes([]Feature{DuoChat, CodeCompletions, DuoChat, CodeGenerations})
	want := []string{"complete_code", "duo_chat", "generate_code"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Scopes = %v, want %v", got, want)
	}
}
