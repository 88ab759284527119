package oaistream

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// fastChunk is a one-pass decoder for the chunk shapes OpenAI-compatible
// servers send. It reads exactly the fields of chunk (choices[].index,
// .delta.content, an empty or null .delta.tool_calls, .text, .finish_reason,
// usage) and validates every other
// byte as it skips it, so one pass replaces validate + scan + decode.
//
// It handles only what it can decode exactly as encoding/json would and
// reports false for everything else, leaving c in an unspecified state; the
// caller then resets c and decodes with encoding/json. Cases it hands over:
// a top level that is not an object, trailing bytes, a key with an escape or
// a non-ASCII byte, a key that matches a field only case-insensitively, a
// duplicate field, an unexpected type for a field (including content arrays
// and null choices), a non-empty tool_calls array (toolcalls.go), a number that is not a plain int for an int field,
// invalid UTF-8 in a decoded string, an "error" member, nesting deeper than
// maxDepth. FuzzFastChunkMatchesStdlib holds it to encoding/json.
type fastChunk struct {
	data []byte
	i    int
	buf  []byte // unescaping scratch, reused across chunks
}

// maxDepth bounds the skipped nesting; deeper documents go to encoding/json.
const maxDepth = 64

// decode decodes data into c (prepared by the caller: Choices empty, Usage
// pointing at a value to fill). It reports whether it did.
func (p *fastChunk) decode(data []byte, c *chunk) bool {
	p.data, p.i = data, 0
	ok := p.top(c)
	p.data = nil
	return ok
}

func (p *fastChunk) ws() {
	for p.i < len(p.data) {
		switch p.data[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (p *fastChunk) peek() byte {
	p.ws()
	if p.i < len(p.data) {
		return p.data[p.i]
	}
	return 0
}

func (p *fastChunk) top(c *chunk) bool {
	if p.peek() != '{' {
		return false
	}
	var seen uint8
	ok := p.object(func(key []byte) bool {
		switch string(key) {
		case "choices":
			return once(&seen, 1) && p.choices(c)
		case "usage":
			return once(&seen, 2) && p.usage(c)
		case "error":
			return false // rare: encoding/json keeps its exact raw value
		}
		return p.unknown(key, 0, "choices", "usage", "error")
	})
	return ok && p.peek() == 0 && p.i == len(p.data)
}

// once marks bit in seen and reports whether it was unset (a duplicate key
// merges in encoding/json; that is left to it).
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// unknown skips the value of a key no field takes. A key that encoding/json
// could still match to a field (case-insensitively, or through escapes or
// Unicode folding) is handed back.
func (p *fastChunk) unknown(key []byte, depth int, fields ...string) bool {
	for _, f := range fields {
		if bytes.EqualFold(key, []byte(f)) {
			return false
		}
	}
	return p.skip(depth)
}

// object reads {"key": value, ...}; field reads each value after the colon.
// Keys with escapes or non-ASCII bytes are handed back.
func (p *fastChunk) object(field func(key []byte) bool) bool {
	p.i++ // '{'
	if p.peek() == '}' {
		p.i++
		return true
	}
	for {
		if p.peek() != '"' {
			return false
		}
		start := p.i + 1
		end := start
		for ; end < len(p.data); end++ {
			b := p.data[end]
			if b == '"' {
				break
			}
			if b < 0x20 || b == '\\' || b >= utf8.RuneSelf {
				return false
			}
		}
		if end == len(p.data) {
			return false
		}
		p.i = end + 1
		if p.peek() != ':' {
			return false
		}
		p.i++
		p.ws()
		if !field(p.data[start:end]) {
			return false
		}
		switch p.peek() {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// null consumes a null literal if one is next.
func (p *fastChunk) null() bool {
	if p.peek() == 'n' && bytes.HasPrefix(p.data[p.i:], []byte("null")) {
		p.i += 4
		return true
	}
	return false
}

func (p *fastChunk) choices(c *chunk) bool {
	if p.null() {
		c.Choices = nil
		return true
	}
	if p.peek() != '[' {
		return false
	}
	p.i++
	if c.Choices == nil {
		c.Choices = []choice{} // encoding/json: [] is empty, not nil
	}
	if p.peek() == ']' {
		p.i++
		return true
	}
	for {
		if p.peek() != '{' {
			return false
		}
		c.Choices = append(c.Choices, choice{})
		if !p.choice(&c.Choices[len(c.Choices)-1]) {
			return false
		}
		switch p.peek() {
		case ',':
			p.i++
		case ']':
			p.i++
			return true
		default:
			return false
		}
	}
}

func (p *fastChunk) choice(ch *choice) bool {
	var seen uint8
	return p.object(func(key []byte) bool {
		switch string(key) {
		case "index":
			return once(&seen, 1) && p.int(&ch.Index)
		case "delta":
			if !once(&seen, 2) {
				return false
			}
			if p.null() {
				return true
			}
			if p.peek() != '{' {
				return false
			}
			var dseen uint8
			return p.object(func(key []byte) bool {
				switch string(key) {
				case "content":
					return once(&dseen, 1) && p.content(&ch.Delta.Content)
				case "tool_calls":
					return once(&dseen, 2) && p.toolCalls(&ch.Delta.ToolCalls)
				}
				return p.unknown(key, 2, "content", "tool_calls")
			})
		case "text":
			return once(&seen, 4) && p.content(&ch.Text)
		case "finish_reason":
			if !once(&seen, 8) {
				return false
			}
			if p.null() {
				return true
			}
			s, ok := p.string()
			ch.FinishReason = s
			return ok
		}
		return p.unknown(key, 1, "index", "delta", "text", "finish_reason")
	})
}

// content decodes a content field: a string is the text; null, numbers,
// booleans and objects carry none (content.UnmarshalJSON ignores them); an
// array of parts is handed back.
func (p *fastChunk) content(t *content) bool {
	switch p.peek() {
	case '"':
		s, ok := p.string()
		*t = content(s)
		return ok
	case '[':
		return false
	}
	return p.skip(2)
}

func (p *fastChunk) usage(c *chunk) bool {
	if p.null() {
		c.Usage = nil
		return true
	}
	if p.peek() != '{' || c.Usage == nil {
		return false
	}
	u := c.Usage
	var seen uint8
	return p.object(func(key []byte) bool {
		switch string(key) {
		case "prompt_tokens":
			return once(&seen, 1) && p.int(&u.PromptTokens)
		case "completion_tokens":
			return once(&seen, 2) && p.int(&u.CompletionTokens)
		}
		return p.unknown(key, 1, "prompt_tokens", "completion_tokens")
	})
}

// int decodes an int field: null leaves it, a plain integer that fits sets
// it; fractions, exponents and overflow are handed back.
func (p *fastChunk) int(v *int) bool {
	if p.null() {
		return true
	}
	start := p.i
	if p.i < len(p.data) && p.data[p.i] == '-' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 18 || (n > 1 && p.data[digits] == '0') {
		return false
	}
	if p.i < len(p.data) {
		switch p.data[p.i] {
		case '.', 'e', 'E':
			return false
		}
	}
	x, err := strconv.Atoi(string(p.data[start:p.i]))
	*v = x
	return err == nil
}

// string decodes the JSON string at p.i. Invalid UTF-8 (which encoding/json
// replaces) is handed back.
func (p *fastChunk) string() (string, bool) {
	if p.i >= len(p.data) || p.data[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	end, esc, ok := p.scanString(start)
	if !ok {
		return "", false
	}
	p.i = end + 1
	raw := p.data[start:end]
	if !utf8.Valid(raw) { // escapes are ASCII: checking the raw bytes suffices
		return "", false
	}
	if !esc {
		return string(raw), true
	}
	p.buf = unescape(p.buf[:0], raw)
	return string(p.buf), true
}

// scanString finds the closing quote of a string starting at start,
// checking escapes and rejecting raw control characters.
func (p *fastChunk) scanString(start int) (end int, esc, ok bool) {
	d := p.data
	for i := start; i < len(d); i++ {
		switch b := d[i]; {
		case b == '"':
			return i, esc, true
		case b == '\\':
			esc = true
			i++
			if i >= len(d) {
				return 0, false, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) || hex4(d[i+1:i+5]) < 0 {
					return 0, false, false
				}
				i += 4
			default:
				return 0, false, false
			}
		case b < 0x20:
			return 0, false, false
		}
	}
	return 0, false, false
}

// hex4 returns the value of four hex digits, or -1.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// unescape appends the value of a scanned string's inner bytes (escapes
// already checked) to dst, as encoding/json does: a surrogate pair is one
// rune, a lone surrogate becomes U+FFFD.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		b := s[i]
		if b != '\\' {
			j := bytes.IndexByte(s[i:], '\\')
			if j < 0 {
				return append(dst, s[i:]...)
			}
			dst = append(dst, s[i:i+j]...)
			i += j
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2 := hex4(s[i+2:]); r2 >= 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							dst = utf8.AppendRune(dst, dec)
							i += 6
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

// skip validates and skips one value of any type.
func (p *fastChunk) skip(depth int) bool {
	switch p.peek() {
	case '"':
		end, _, ok := p.scanString(p.i + 1)
		p.i = end + 1
		return ok
	case '{':
		if depth >= maxDepth {
			return false
		}
		return p.object(func([]byte) bool { return p.skip(depth + 1) })
	case '[':
		if depth >= maxDepth {
			return false
		}
		p.i++
		if p.peek() == ']' {
			p.i++
			return true
		}
		for {
			if !p.skip(depth + 1) {
				return false
			}
			switch p.peek() {
			case ',':
				p.i++
			case ']':
				p.i++
				return true
			default:
				return false
			}
		}
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	}
	return p.number()
}

func (p *fastChunk) literal(s string) bool {
	if !bytes.HasPrefix(p.data[p.i:], []byte(s)) {
		return false
	}
	p.i += len(s)
	return true
}

// number skips a number in JSON's grammar:
// -? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?
func (p *fastChunk) number() bool {
	d := p.data
	if p.i < len(d) && d[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i >= len(d):
		return false
	case d[p.i] == '0':
		p.i++
	case d[p.i] >= '1' && d[p.i] <= '9':
		p.digits()
	default:
		return false
	}
	if p.i < len(d) && d[p.i] == '.' {
		p.i++
		if !p.digits() {
			return false
		}
	}
	if p.i < len(d) && (d[p.i] == 'e' || d[p.i] == 'E') {
		p.i++
		if p.i < len(d) && (d[p.i] == '+' || d[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return false
		}
	}
	return true
}

// digits consumes [0-9]+ and reports whether there was at least one.
func (p *fastChunk) digits() bool {
	start := p.i
	for p.i < len(p.data) && p.data[p.i] >= '0' && p.data[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}
