package flagenv

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newSet() (*flag.FlagSet, *string, *int) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	addr := fs.String("grpc-addr", "127.0.0.1:1", "")
	n := fs.Int("max-streams", 10, "")
	return fs, addr, n
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "grpc-addr: file:3\nmax-streams: 7\n")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantAddr string
		wantN    int
	}{
		{"defaults", nil, nil, "127.0.0.1:1", 10},
		{"file over default", []string{"--config", file}, nil, "file:3", 7},
		{"env over file", []string{"--config", file}, map[string]string{"T_GRPC_ADDR": "env:2"}, "env:2", 7},
		{"flag over env", []string{"--config", file, "--grpc-addr", "flag:1"}, map[string]string{"T_GRPC_ADDR": "env:2"}, "flag:1", 7},
		{"config path from env", nil, map[string]string{"T_CONFIG": file}, "file:3", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs, addr, n := newSet()
			if err := Parse(fs, "T", tt.args); err != nil {
				t.Fatal(err)
			}
			if *addr != tt.wantAddr || *n != tt.wantN {
				t.Fatalf("got %q %d, want %q %d", *addr, *n, tt.wantAddr, tt.wantN)
			}
		})
	}
}

func TestErrorsNameTheSource(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"bad env value", nil, map[string]string{"T_MAX_STREAMS": "many"}, "env T_MAX_STREAMS"},
		{"unknown file key", []string{"--config", writeFile(t, "grpc_addr: x\n")}, nil, `unknown key "grpc_addr"`},
		{"bad file value", []string{"--config", writeFile(t, "max-streams: lots\n")}, nil, `key "max-streams"`},
		{"not yaml", []string{"--config", writeFile(t, "[")}, nil, "config file"},
		{"missing file", []string{"--config", "/nonexistent/x.yaml"}, nil, "config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs, _, _ := newSet()
			err := Parse(fs, "T", tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
