package prompt

import (
	"testing"

	"github.com/airlock-dev/airlock/pkg/model"
)

// TestTemplatesAreKeyedByModelFamilies keeps the templates in pkg/model's
// vocabulary: a template under a name the issuer would refuse could never
// be used, and an alias must lead to a template.
func TestTemplatesAreKeyedByModelFamilies(t *testing.T) {
	for family := range templates {
		if !model.IsFamily(family) {
			t.Errorf("template %q is not a pkg/model family (%s)", family, model.FamilyList())
		}
	}
	for alias, family := range aliases {
		if _, ok := templates[family]; !ok {
			t.Errorf("alias %q leads to %q, which has no template", alias, family)
		}
	}
}
