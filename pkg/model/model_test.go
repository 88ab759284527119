package model

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The lists are the product vocabulary: a change here changes what the
// issuer accepts and what help texts say, so it is pinned.
func TestListsArePinned(t *testing.T) {
	if got, want := ProviderList(), "openai_compatible, ollama, anthropic, azure_openai, tgi"; got != want {
		t.Errorf("ProviderList = %q, want %q", got, want)
	}
	if got, want := FamilyList(), "mistral, mixtral, llama3, codegemma, codestral, codellama, deepseekcoder, qwen, claude_3, gpt, general"; got != want {
		t.Errorf("FamilyList = %q, want %q", got, want)
	}
}

func TestMembership(t *testing.T) {
	for _, p := range Providers() {
		if !IsProvider(p) || IsFamily(p) {
			t.Errorf("provider %q: IsProvider %v IsFamily %v", p, IsProvider(p), IsFamily(p))
		}
	}
	for _, f := range Families() {
		if !IsFamily(f) || IsProvider(f) {
			t.Errorf("family %q: IsFamily %v IsProvider %v", f, IsFamily(f), IsProvider(f))
		}
	}
	for _, s := range []string{"", "TGI", " tgi", "openai", "bedrock", "Mistral"} {
		if IsProvider(s) || IsFamily(s) {
			t.Errorf("%q is accepted", s)
		}
	}
}

func TestListsAreCopies(t *testing.T) {
	p := Providers()
	p[0] = "changed"
	f := Families()
	f[0] = "changed"
	if slices.Contains(Providers(), "changed") || slices.Contains(Families(), "changed") {
		t.Fatal("changing a returned slice changed the package's list")
	}
}

// TestContractDocumentsEveryName: the public contract's comments on
// Model.family and Model.provider cannot be generated from this package,
// so they are checked against it.
func TestContractDocumentsEveryName(t *testing.T) {
	b, err := os.ReadFile("../../proto/airlock/issuer/v1/model.proto")
	if err != nil {
		t.Fatal(err)
	}
	proto := string(b)
	for _, n := range append(Providers(), Families()...) {
		if !strings.Contains(proto, n) {
			t.Errorf("proto/airlock/issuer/v1/model.proto does not mention %q", n)
		}
	}
}
