package egress

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// The transport holds small buffers per upstream connection (the memory
// of every open stream), and they bound nothing a model server may send
// or a request may carry: a header line and a request body longer than
// the buffers, and an SSE body of many chunks, all pass.
func TestTransportSmallBuffersCarryLongMessages(t *testing.T) {
	g, err := New([]string{"127.0.0.0/8"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Transport()
	defer tr.CloseIdleConnections()
	if fb := g.netHTTPTransport(); fb.ReadBufferSize != ReadBufferSize || fb.WriteBufferSize != WriteBufferSize || ReadBufferSize > 2<<10 || WriteBufferSize > 1<<10 {
		t.Fatalf("TLS transport buffers %d/%d, want the small %d/%d", fb.ReadBufferSize, fb.WriteBufferSize, ReadBufferSize, WriteBufferSize)
	}
	longHeader := strings.Repeat("h", 4*ReadBufferSize)
	chunk := "data: " + strings.Repeat("x", 300) + "\n\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Long", longHeader)
		w.Header().Set("X-Body-Len", strconv.Itoa(len(body)))
		w.Header().Set("Content-Type", "text/event-stream")
		for range 50 {
			_, _ = io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	body := bytes.Repeat([]byte("b"), 10*WriteBufferSize+7)
	resp, err := (&http.Client{Transport: tr}).Post(srv.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("X-Long") != longHeader {
		t.Fatalf("long header: %d bytes, want %d", len(resp.Header.Get("X-Long")), len(longHeader))
	}
	if want := strings.Repeat(chunk, 50); string(got) != want {
		t.Fatalf("body: %d bytes, want %d", len(got), len(want))
	}
	if got := resp.Header.Get("X-Body-Len"); got != strconv.Itoa(len(body)) {
		t.Fatalf("the server read %s request body bytes, want %d", got, len(body))
	}
}

// Both paths dial through the guard: plain text (h1) and TLS (net/http).
func TestTransportDialsOnlyTrustedNetworks(t *testing.T) {
	g, err := New([]string{"10.0.0.0/8"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Transport()
	defer tr.CloseIdleConnections()
	for _, url := range []string{"http://127.0.0.1:9/v1", "https://127.0.0.1:9/v1"} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
		_, err := (&http.Client{Transport: tr}).Do(req)
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s: err = %v, want ErrForbidden", url, err)
		}
	}
}

// https goes through net/http's transport, with TLS: against a server
// whose certificate no system root signed, the handshake is what fails
// (h1 would have sent plain text).
func TestTransportSpeaksTLSToHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	g, err := New([]string{"127.0.0.0/8"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := g.Transport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader("{}"))
	_, err = (&http.Client{Transport: tr}).Do(req)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("https to an untrusted server: err = %v, want x509.UnknownAuthorityError", err)
	}
}
