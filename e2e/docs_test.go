package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryFlag keeps the configuration reference true: every
// flag each service binary accepts has a row in README.md with its
// environment variable.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for bin, prefix := range map[string]string{"issuer": "AIRLOCK_ISSUER", "gateway": "AIRLOCK_GATEWAY", "stubmodel": "AIRLOCK_STUB"} {
		out, _ := exec.Command(filepath.Join(binDir, bin), "--help").CombinedOutput()
		flags := flagLine.FindAllStringSubmatch(string(out), -1)
		if len(flags) < 5 {
			t.Fatalf("%s --help listed %d flags:\n%s", bin, len(flags), out)
		}
		for _, f := range flags {
			env := prefix + "_" + strings.ToUpper(strings.ReplaceAll(f[1], "-", "_"))
			row := "| `--" + f[1] + "` | `" + env + "` |"
			if !strings.Contains(string(readme), row) {
				t.Errorf("README.md has no configuration row for %s --%s (%s)", bin, f[1], env)
			}
		}
	}
}
