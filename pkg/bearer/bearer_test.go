package bearer

import "testing"

// TestParseWhiteSpace fixes the accepted form for both services: the
// gateway's rule (one space, nothing around the credential), which is the
// stricter of the two they had.
func TestParseWhiteSpace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value string
		want  string // "" means refused
	}{
		{"canonical", "Bearer abc.def-ghi_jkl~+/=", "abc.def-ghi_jkl~+/="},
		{"scheme in lower case", "bearer abc", "abc"},
		{"scheme in upper case", "BEARER abc", "abc"},
		{"non-b64token bytes are the reader's business", "Bearer a!b", "a!b"},
		{"empty", "", ""},
		{"scheme only", "Bearer", ""},
		{"scheme and space only", "Bearer ", ""},
		{"two spaces", "Bearer  abc", ""},
		{"trailing space", "Bearer abc ", ""},
		{"trailing newline", "Bearer abc\n", ""},
		{"leading space", " Bearer abc", ""},
		{"tab separator", "Bearer\tabc", ""},
		{"tab inside", "Bearer a\tb", ""},
		{"two credentials", "Bearer abc def", ""},
		{"control character", "Bearer a\x00b", ""},
		{"DEL", "Bearer a\x7fb", ""},
		{"another scheme", "Basic abc", ""},
		{"scheme prefix only", "Bear abc", ""},
		{"longer scheme", "Bearerx abc", ""},
		{"no scheme", "abc", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Parse(tc.value)
			if ok != (tc.want != "") || got != tc.want {
				t.Fatalf("Parse(%q) = %q, %v; want %q", tc.value, got, ok, tc.want)
			}
		})
	}
}

func TestFormatRoundTrips(t *testing.T) {
	v := Format("tok")
	if v != "Bearer tok" {
		t.Fatalf("Format = %q", v)
	}
	if got, ok := Parse(v); !ok || got != "tok" {
		t.Fatalf("Parse(Format) = %q, %v", got, ok)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Bearer", "Basic x", "Bearer a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cred, ok := Parse(s)
		if !ok {
			return
		}
		if Format(cred) != "Bearer "+cred || len(s) != len(Scheme)+1+len(cred) {
			t.Fatalf("Parse(%q) = %q does not account for every byte", s, cred)
		}
		for i := 0; i < len(cred); i++ {
			if cred[i] <= ' ' || cred[i] == 0x7f {
				t.Fatalf("Parse(%q) kept white space or a control byte", s)
			}
		}
	})
}
