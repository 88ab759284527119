package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkStream sends a request and reads a 64-chunk SSE answer through
// net/http's Transport and through this one, against a server that writes
// each answer in one piece (so the client's cost dominates).
func BenchmarkStream(b *testing.B) {
	var answer strings.Builder
	answer.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for i := range 64 {
		ev := fmt.Sprintf("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"}}]}\n\n", i)
		fmt.Fprintf(&answer, "%x\r\n%s\r\n", len(ev), ev)
	}
	answer.WriteString("0\r\n\r\n")
	wire := answer.String()
	srv, _ := scripted(b, func(c net.Conn, br *bufio.Reader) {
		for readRequest(br) {
			if _, err := io.WriteString(c, wire); err != nil {
				return
			}
		}
	})
	url := srv + "/v1/chat/completions"
	body := strings.Repeat("p", 300)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{
		{"net-http", &http.Transport{ReadBufferSize: 2 << 10, WriteBufferSize: 1 << 10}},
		{"h1", newTransport(nil)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client := &http.Client{Transport: tc.rt}
			buf := make([]byte, 2<<10)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer k")
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					for {
						if _, err := resp.Body.Read(buf); err != nil {
							break
						}
					}
					_ = resp.Body.Close()
				}
			})
			client.CloseIdleConnections()
		})
	}
}
