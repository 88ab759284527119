package suite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// nginx is a plain reverse proxy in front of a model server: the peer the
// gateway's relay cost is compared with. It runs as one process (no master,
// so /proc/<pid>/stat holds all of its CPU) from a configuration in its own
// directory, on a loopback port: never the system service.
type nginx struct {
	proc    *cluster.Proc
	Addr    string
	Version string
}

// nginxConf is the proxy: response buffering off (every chunk goes out as
// it arrives), HTTP/1.1 keepalive to the upstream, access log on.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 16384; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    upstream model {
        server %[2]s;
        keepalive 512;
        keepalive_requests 1000000;
    }
    server {
        listen %[3]s;
        location / {
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
`

// nginxBinary finds nginx on PATH or in /usr/sbin.
func nginxBinary() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx not found (scripts/bench.sh installs the Debian package nginx-light)")
}

// startNginx starts nginx in dir proxying to upstream (host:port) and waits
// until a request through it reaches upstream's /healthz.
func startNginx(ctx context.Context, dir, upstream string) (*nginx, error) {
	bin, err := nginxBinary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	addr, err := cluster.FreeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(abs, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, abs, upstream, addr)), 0o644); err != nil {
		return nil, err
	}
	version := "nginx"
	if out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput(); err == nil {
		version = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}
	p, err := cluster.StartProc("nginx", []string{bin, "-p", abs, "-e", filepath.Join(abs, "error.log"), "-c", conf}, filepath.Join(abs, "nginx.out"))
	if err != nil {
		return nil, err
	}
	if err := waitProxying(ctx, p, addr); err != nil {
		log, _ := os.ReadFile(filepath.Join(abs, "error.log"))
		return nil, fmt.Errorf("nginx %w\n%s", err, log)
	}
	return &nginx{proc: p, Addr: addr, Version: version}, nil
}

// waitProxying waits until a request through the proxy p serving on addr
// reaches the model's /healthz. If p exits, ctx ends or 15 s pass first, it
// stops p and says why, with p's output.
func waitProxying(ctx context.Context, p *cluster.Proc, addr string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop(time.Second)
			return fmt.Errorf("did not come up on %s: %v\n%s", addr, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PID is the nginx process (it serves every request: no master, no workers).
func (n *nginx) PID() int { return n.proc.PID() }

// Close stops nginx.
func (n *nginx) Close() { n.proc.Stop(5 * time.Second) }
