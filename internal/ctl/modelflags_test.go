package ctl

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/pkg/model"
)

// TestModelFlagHelpNamesEveryProviderAndFamily: the help is generated from
// pkg/model, so it cannot omit a provider the issuer accepts (it once
// omitted tgi).
func TestModelFlagHelpNamesEveryProviderAndFamily(t *testing.T) {
	fs := flag.NewFlagSet("model create", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	registerModelFlags(fs, false)
	for flagName, names := range map[string][]string{"provider": model.Providers(), "family": model.Families()} {
		usage := fs.Lookup(flagName).Usage
		for _, n := range names {
			if !strings.Contains(usage, n) {
				t.Errorf("--%s help %q does not name %q", flagName, usage, n)
			}
		}
	}
}
