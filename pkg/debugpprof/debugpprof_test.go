package debugpprof

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServesNamedProfiles(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, want := range map[string]string{"goroutine?debug=1": "goroutine profile:", "heap?debug=1": "heap profile:", "": "Types of profiles available"} {
		resp, err := srv.Client().Get(srv.URL + Prefix + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}
