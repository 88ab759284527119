package suite

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/bench/load"
	gwapp "github.com/airlock-dev/airlock/gateway/app"
	"github.com/airlock-dev/airlock/internal/testkit/cluster"
)

// gatewayWithPprof runs the real gateway (gateway/app.Main) in this process
// with net/http/pprof on a separate loopback listener, so the suite can
// profile the gateway without a --pprof flag in gateway/app. Usage:
// airlock-bench gateway-pprof --pprof-addr 127.0.0.1:P -- <gateway flags>.
func gatewayWithPprof(args []string) int {
	if len(args) < 2 || args[0] != "--pprof-addr" {
		fmt.Fprintln(os.Stderr, "usage: airlock-bench gateway-pprof --pprof-addr 127.0.0.1:PORT -- <gateway flags>")
		return 2
	}
	addr, rest := args[1], args[2:]
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintln(os.Stderr, "gateway-pprof: --pprof-addr must be a loopback address: profiles expose memory contents")
		return 2
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway-pprof:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Close()
	return gwapp.Main(rest, os.Stderr)
}

// runProfile profiles the gateway relaying completions at 32 concurrent
// streams: a CPU profile and the allocations made during the load.
func runProfile(ctx context.Context, o Options, dir string, r *Report, logw io.Writer) error {
	const section = "profile"
	self, err := os.Executable()
	if err != nil {
		return err
	}
	paddr, err := cluster.FreeAddr()
	if err != nil {
		return err
	}
	g, err := startGatewayBench(ctx, cluster.Config{BinDir: o.BinDir, WorkDir: dir, StubTokens: wireStubTokens,
		GatewayCommand: []string{self, "gateway-pprof", "--pprof-addr", paddr, "--"}}, 2)
	if err != nil {
		return err
	}
	defer g.Close()
	t := g.target()
	if n, err := load.Run(ctx, t, 32, 2).Errors(); n > 0 {
		return fmt.Errorf("warm-up: %w", err)
	}
	secs := 8
	if o.Quick {
		secs = 2
	}
	base := "http://" + paddr + "/debug/pprof/"
	if err := fetch(ctx, base+"allocs", filepath.Join(dir, "allocs-before.pb.gz")); err != nil {
		return err
	}
	lctx, stop := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		n := 0
		for lctx.Err() == nil {
			n += len(load.Run(lctx, t, 32, 4).Streams)
		}
		done <- n
	}()
	cpuPath := filepath.Join(dir, "gateway-cpu.pb.gz")
	err = fetch(ctx, fmt.Sprintf("%sprofile?seconds=%d", base, secs), cpuPath)
	if err == nil {
		err = fetch(ctx, base+"allocs", filepath.Join(dir, "allocs-after.pb.gz"))
	}
	stop()
	streams := <-done
	if err != nil {
		return err
	}
	cpuTop, err := pprofTop(ctx, "-top", "-nodecount=25", cpuPath)
	if err != nil {
		return err
	}
	allocTop, err := pprofTop(ctx, "-top", "-nodecount=25", "-sample_index=alloc_space",
		"-base", filepath.Join(dir, "allocs-before.pb.gz"), filepath.Join(dir, "allocs-after.pb.gz"))
	if err != nil {
		return err
	}
	allocObj, _ := pprofTop(ctx, "-top", "-nodecount=15", "-sample_index=alloc_objects",
		"-base", filepath.Join(dir, "allocs-before.pb.gz"), filepath.Join(dir, "allocs-after.pb.gz"))
	r.add(Figure{section, "gateway profiled under load", fmt.Sprintf("%d streams at 32 concurrent, %d s CPU profile", streams, secs), "(reported)", Info})
	r.detail(section, "The real gateway code (gateway/app.Main) run inside `airlock-bench gateway-pprof`, which adds net/http/pprof on a loopback port; load: 32 concurrent streams of %d chunks (stub at zero delay) for the profile's duration (%d streams). `make bench` copies the raw profiles to bin/profiles.\n\nCPU (top 25, flat):\n\n```\n%s```\n\nAllocated bytes during the load (top 25, flat):\n\n```\n%s```\n\nAllocated objects during the load (top 15, flat):\n\n```\n%s```",
		wireStubTokens, streams, trimPprof(cpuTop), trimPprof(allocTop), trimPprof(allocObj))
	fmt.Fprintf(logw, "   profiled %d streams; profiles in %s\n", streams, dir)
	return nil
}

func fetch(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func pprofTop(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	return string(out), nil
}

// trimPprof drops pprof's header lines that name local files.
func trimPprof(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}
