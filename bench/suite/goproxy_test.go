package suite

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestGoProxyRelaysEachChunkAsItArrives: the Go peer must be a streaming
// relay like nginx with proxy_buffering off, or its CPU per answer would
// compare a buffering proxy with streaming ones. The model withholds its
// second event until the client has read the first through the proxy.
func TestGoProxyRelaysEachChunkAsItArrives(t *testing.T) {
	firstRead := make(chan struct{})
	gotBody := make(chan string, 1)
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotBody <- string(b)
		// Not text/event-stream, which ReverseProxy flushes whatever its
		// FlushInterval: Ollama's native stream is NDJSON.
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-firstRead:
		case <-time.After(5 * time.Second):
			t.Error("the first event did not reach the client while the model waited")
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	defer model.Close()
	u, _ := url.Parse(model.URL)
	proxy := httptest.NewServer(goProxyHandler(u))
	defer proxy.Close()

	resp, err := http.Post(proxy.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := <-gotBody; got != `{"stream":true}` {
		t.Errorf("model received body %q", got)
	}
	r := bufio.NewReader(resp.Body)
	for i, want := range []string{"data: one\n", "\n", "data: two\n", "\n"} {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if line != want {
			t.Fatalf("line %d = %q, want %q", i, line, want)
		}
		if i == 1 {
			close(firstRead)
		}
	}
}
