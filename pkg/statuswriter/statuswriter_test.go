package statuswriter

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCode(t *testing.T) {
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter)
		want    int
	}{
		{"nothing written", func(http.ResponseWriter) {}, 200},
		{"body only", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, 200},
		{"explicit status", func(w http.ResponseWriter) { w.WriteHeader(429) }, 429},
		{"first status wins", func(w http.ResponseWriter) { w.WriteHeader(503); w.WriteHeader(200) }, 503},
		{"status after a body", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")); w.WriteHeader(500) }, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sw := New(rec)
			if sw.Wrote() {
				t.Fatal("Wrote before anything was written")
			}
			tc.handler(sw)
			if wrote := tc.name != "nothing written"; sw.Wrote() != wrote {
				t.Fatalf("Wrote() = %v, want %v", sw.Wrote(), wrote)
			}
			if sw.Code() != tc.want || rec.Code != tc.want {
				t.Fatalf("Code() = %d, recorder %d, want %d", sw.Code(), rec.Code, tc.want)
			}
		})
	}
}

// Flush and http.ResponseController reach the wrapped writer.
func TestFlushPassesThrough(t *testing.T) {
	rec := httptest.NewRecorder()
	sw := New(rec)
	sw.Flush()
	if !rec.Flushed {
		t.Fatal("Flush did not reach the wrapped writer")
	}
	rec2 := httptest.NewRecorder()
	if err := http.NewResponseController(New(rec2)).Flush(); err != nil || !rec2.Flushed {
		t.Fatalf("ResponseController.Flush = %v, flushed %v", err, rec2.Flushed)
	}
}
