package adaptertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
)

// Fixture is one case of the shared wire fixtures (../shared/fixtures/wire
// relative to the repository root): a recorded response body and the result
// a correct adapter reports for it.
type Fixture struct {
	Case            string            `json:"case"`
	Provider        string            `json:"provider"`
	HTTPMethod      string            `json:"http_method"`
	HTTPPath        string            `json:"http_path"`
	ContentType     string            `json:"content_type"`
	HTTPStatus      int               `json:"http_status"`
	ResponseHeaders map[string]string `json:"response_headers"`
	ExpectedText    string            `json:"expected_text"`
	ExpectedFinish  string            `json:"expected_finish"`
	RawFinishReason *string           `json:"raw_finish_reason"`
	ExpectedUsage   *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"expected_usage"`
	ExpectedError       *string `json:"expected_error"`
	ExpectedErrorFields *struct {
		Type       *string `json:"type"`
		Code       *string `json:"code"`
		Message    *string `json:"message"`
		HTTPStatus *int    `json:"http_status"`
		Retryable  *bool   `json:"retryable"`
	} `json:"expected_error_fields"`
	ExpectedRetryAfterSeconds *float64 `json:"expected_retry_after_seconds"`

	// Body is the exact response body (<case>.body).
	Body []byte `json:"-"`
}

// Path is HTTPPath without its query.
func (f *Fixture) Path() string {
	p, _, _ := strings.Cut(f.HTTPPath, "?")
	return p
}

// Query is HTTPPath's query, if any.
func (f *Fixture) Query() string {
	_, q, _ := strings.Cut(f.HTTPPath, "?")
	return q
}

// FixtureDir returns the wire fixture folder: ../shared/fixtures/wire from the
// directory holding go.mod, found by walking up from the working directory.
// It skips the test when the folder is absent on a developer's machine, and
// fails it in CI, which always has it.
func FixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("wire fixtures: no go.mod above the working directory")
		}
		dir = parent
	}
	fx := filepath.Join(dir, "..", "shared", "fixtures", "wire")
	if _, err := os.Stat(fx); err != nil {
		needs.Skip(t, fmt.Sprintf("wire fixtures not found at %s (expected ../shared/fixtures/wire next to the repository root): %v", fx, err))
	}
	return fx
}

// LoadFixtures reads every case in the fixture folder, sorted by name.
func LoadFixtures(t testing.TB) []Fixture {
	t.Helper()
	dir := FixtureDir(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var out []Fixture
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var f Fixture
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatalf("%s: %v", filepath.Base(name), err)
		}
		if f.Body, err = os.ReadFile(strings.TrimSuffix(name, ".json") + ".body"); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Skipf("wire fixtures: no cases in %s", dir)
	}
	return out
}
