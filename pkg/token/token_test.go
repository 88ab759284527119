package token

import "testing"

func TestMetadata(t *testing.T) {
	md := Metadata("tok", "inst", "gu")
	want := map[string]string{
		"authorization":                "Bearer tok",
		"x-gitlab-authentication-type": "oidc",
		"x-gitlab-instance-id":         "inst",
		"x-gitlab-realm":               "self-managed",
		"x-gitlab-global-user-id":      "gu",
	}
	if len(md) != len(want) {
		t.Fatalf("Metadata has %d keys, want %d", len(md), len(want))
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("Metadata[%q] = %q, want %q", k, md[k], v)
		}
	}
}
