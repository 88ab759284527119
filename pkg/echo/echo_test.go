package echo_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/pkg/echo"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"short values are quoted whole", "duo_chat", `"duo_chat"`},
		{"empty", "", `""`},
		{"control characters are escaped", "a\nb\x00", `"a\nb\x00"`},
		{"long values are cut with their length", strings.Repeat("x", 1<<20), `"` + strings.Repeat("x", echo.MaxBytes) + `"…(1048576 bytes)`},
		{"a cut never splits a rune", strings.Repeat("x", echo.MaxBytes-1) + "é" + "yyy", `"` + strings.Repeat("x", echo.MaxBytes-1) + `"…(68 bytes)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := echo.Quote(tc.in); got != tc.want {
				t.Fatalf("Quote = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestQuoteIsBoundedWhateverTheInput(t *testing.T) {
	for _, in := range []string{strings.Repeat("\x00", 1<<16), strings.Repeat("é", 1<<16), strings.Repeat("\xff", 1<<16)} {
		got := echo.Quote(in)
		if len(got) > 4*echo.MaxBytes+30 || !utf8.ValidString(got) {
			t.Fatalf("Quote of %d bytes gave %d bytes (valid UTF-8: %v)", len(in), len(got), utf8.ValidString(got))
		}
	}
}

func TestMessage(t *testing.T) {
	if got := echo.Message("short"); got != "short" {
		t.Fatalf("Message(short) = %q", got)
	}
	got := echo.Message(strings.Repeat("é", echo.MaxMessage))
	if !strings.HasSuffix(got, "…(2048 bytes)") || len(got) > echo.MaxMessage+20 || !utf8.ValidString(got) {
		t.Fatalf("Message of 2048 bytes = %d bytes %q…", len(got), got[len(got)-20:])
	}
}
