package oaistream

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf8"
)

// errUnsupportedFloat is returned for NaN or an infinite generation option
// (JSON has no such numbers; encoding/json refuses them too).
var errUnsupportedFloat = errors.New("oaistream: NaN or infinite number in request")

// appendBody appends b as JSON to dst, byte for byte what encoding/json's
// Marshal writes for it (TestAppendBodyMatchesEncodingJSON and
// FuzzAppendBodyMatchesEncodingJSON hold it to that). It uses no reflection
// and little stack: encoding the request was the main source of goroutine
// stack growth on the relay's hot path.
func appendBody(dst []byte, b *body) ([]byte, error) {
	dst = append(dst, '{')
	if b.Model != "" {
		dst = append(dst, `"model":`...)
		dst = appendString(dst, b.Model)
		dst = append(dst, ',')
	}
	if len(b.Messages) > 0 {
		dst = append(dst, `"messages":[`...)
		for i, m := range b.Messages {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"role":`...)
			dst = appendString(dst, m.Role)
			dst = append(dst, `,"content":`...)
			dst = appendString(dst, m.Content)
			dst = append(dst, '}')
		}
		dst = append(dst, "],"...)
	}
	if b.Prompt != nil {
		dst = append(dst, `"prompt":`...)
		dst = appendString(dst, *b.Prompt)
		dst = append(dst, ',')
	}
	dst = append(dst, `"stream":`...)
	dst = strconv.AppendBool(dst, b.Stream)
	if b.StreamOptions != nil {
		dst = append(dst, `,"stream_options":{"include_usage":`...)
		dst = strconv.AppendBool(dst, b.StreamOptions.IncludeUsage)
		dst = append(dst, '}')
	}
	if b.MaxTokens != 0 {
		dst = append(dst, `,"max_tokens":`...)
		dst = strconv.AppendInt(dst, int64(b.MaxTokens), 10)
	}
	var err error
	if b.Temperature != nil {
		dst = append(dst, `,"temperature":`...)
		if dst, err = appendFloat32(dst, *b.Temperature); err != nil {
			return nil, err
		}
	}
	if b.TopP != nil {
		dst = append(dst, `,"top_p":`...)
		if dst, err = appendFloat32(dst, *b.TopP); err != nil {
			return nil, err
		}
	}
	if len(b.Stop) > 0 {
		dst = append(dst, `,"stop":[`...)
		for i, s := range b.Stop {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, s)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}'), nil
}

// appendFloat32 writes f as encoding/json writes a float32.
func appendFloat32(dst []byte, f float32) ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return nil, errUnsupportedFloat
	}
	format := byte('f')
	if abs := float32(math.Abs(float64(f))); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, float64(f), format, -1, 32)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string the way encoding/json does with
// HTML escaping on: <, > and & as \u003c etc., U+2028 and U+2029 escaped,
// invalid UTF-8 as \ufffd.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
