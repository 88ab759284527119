package h1

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
)

// Decoding a chunked body allocates nothing per chunk, waiting or not:
// the decoder itself is the one allocation per body.
func TestChunkedDecodesWithoutAllocating(t *testing.T) {
	var wire strings.Builder
	for i := range 64 {
		ev := fmt.Sprintf("data: {\"choices\":[{\"delta\":{\"content\":\"tok%d\"}}]}\n\n", i)
		fmt.Fprintf(&wire, "%x\r\n%s\r\n", len(ev), ev)
	}
	wire.WriteString("0\r\n\r\n")
	body := wire.String()
	rd := strings.NewReader(body)
	br := bufio.NewReaderSize(rd, 2<<10)
	buf := make([]byte, 512)
	for _, buffered := range []bool{false, true} {
		allocs := testing.AllocsPerRun(50, func() {
			rd.Reset(body)
			br.Reset(rd)
			c := chunked{br: br}
			for {
				var n int
				var err error
				if buffered {
					n, err = c.readBuffered(buf)
				}
				if n == 0 && err == nil {
					_, err = c.Read(buf)
				}
				if err != nil {
					break
				}
			}
		})
		if allocs > 1 {
			t.Errorf("readBuffered %v: %v allocations per 64-chunk body, want at most 1", buffered, allocs)
		}
	}
}
