// Package model names the model server APIs (providers) and model families
// Airlock knows. The issuer validates a model's configuration against these
// lists, the gateway's adapter registry and prompt templates are keyed by
// them, and every help text is generated from them, so a provider or family
// added here is added everywhere or breaks a build or a test.
package model

import (
	"slices"
	"strings"
)

// Provider names: the API a model server speaks (the Model.provider field).
const (
	// OpenAICompatible is the OpenAI chat/completions API (vLLM, llama.cpp,
	// LM Studio, TGI's /v1, Mistral, Ollama's /v1 ...).
	OpenAICompatible = "openai_compatible"
	// Ollama is Ollama's native /api/chat and /api/generate.
	Ollama = "ollama"
	// Anthropic is the Anthropic Messages API.
	Anthropic = "anthropic"
	// AzureOpenAI is Azure OpenAI's deployment-scoped chat completions.
	AzureOpenAI = "azure_openai"
	// TGI is Hugging Face Text Generation Inference's native /generate_stream.
	TGI = "tgi"
)

// Family names: the model family decides the prompt template.
const (
	Mistral       = "mistral"
	Mixtral       = "mixtral"
	Llama3        = "llama3"
	CodeGemma     = "codegemma"
	Codestral     = "codestral"
	CodeLlama     = "codellama"
	DeepSeekCoder = "deepseekcoder"
	Qwen          = "qwen"
	Claude3       = "claude_3"
	GPT           = "gpt"
	General       = "general"
)

var (
	providers = []string{OpenAICompatible, Ollama, Anthropic, AzureOpenAI, TGI}
	families  = []string{Mistral, Mixtral, Llama3, CodeGemma, Codestral, CodeLlama, DeepSeekCoder, Qwen, Claude3, GPT, General}
)

// Providers returns every provider name in a stable order. The slice is new
// on every call.
func Providers() []string { return slices.Clone(providers) }

// Families returns every family name in a stable order. The slice is new on
// every call.
func Families() []string { return slices.Clone(families) }

// IsProvider reports whether s is a provider name (exact, lower case).
func IsProvider(s string) bool { return slices.Contains(providers, s) }

// IsFamily reports whether s is a family name (exact, lower case).
func IsFamily(s string) bool { return slices.Contains(families, s) }

// ProviderList is Providers for messages and help texts:
// "openai_compatible, ollama, anthropic, azure_openai, tgi".
func ProviderList() string { return strings.Join(providers, ", ") }

// FamilyList is Families for messages and help texts.
func FamilyList() string { return strings.Join(families, ", ") }
