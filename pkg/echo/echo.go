// Package echo quotes caller-supplied values for error messages and logs,
// so whatever a caller sends, what comes back (and what is logged) is short
// and printable: at most MaxBytes of the value, Go-quoted (control
// characters and invalid UTF-8 escaped), and, when cut, a "…(N bytes)"
// suffix giving the value's full length.
package echo

import (
	"strconv"
	"unicode/utf8"
)

// MaxBytes is how much of a value Quote keeps.
const MaxBytes = 64

// Quote returns s quoted, cut to its first MaxBytes bytes (never inside a
// UTF-8 sequence) with the original length appended when it was longer.
// The result is at most about 4×MaxBytes+30 bytes, whatever s is.
func Quote(s string) string {
	if len(s) <= MaxBytes {
		return strconv.Quote(s)
	}
	n := MaxBytes
	for n > MaxBytes-utf8.UTFMax && !utf8.RuneStart(s[n]) {
		n--
	}
	return strconv.Quote(s[:n]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// MaxMessage bounds a whole message built from values that were not
// quoted one by one (a backstop at the error boundary).
const MaxMessage = 1024

// Message returns msg cut to MaxMessage bytes (never inside a UTF-8
// sequence), with "…(N bytes)" appended when it was longer.
func Message(msg string) string {
	if len(msg) <= MaxMessage {
		return msg
	}
	n := MaxMessage
	for n > MaxMessage-utf8.UTFMax && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + "…(" + strconv.Itoa(len(msg)) + " bytes)"
}
