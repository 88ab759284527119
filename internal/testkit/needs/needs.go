// Package needs lets a test skip when an optional outside dependency (a
// Debian package such as python3-jose) is missing on a developer's machine,
// while failing in CI, which installs every test dependency: there a skip
// would hide a broken install step.
package needs

import (
	"os"
	"testing"
)

// Skip skips t with reason, or fails it when the CI environment variable is
// set (CI runs `bash .ci/run` with CI=true).
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("missing test dependency in CI: %s", reason)
	}
	t.Skip(reason)
}
