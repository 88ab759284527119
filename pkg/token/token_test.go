package token

import "testing"

func TestGlobalUserID(t *testing.T) {
	// printf 'abc42' | sha256sum
	const want = "8216ac77f5c9ed66907b03f1d78b795e7cdd315cecd13df42cd7245d45e16b06"
	if got := GlobalUserID("abc", 42); got != want {
		t.Fatalf("GlobalUserID = %s, want %s", got, want)
	}
}

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
