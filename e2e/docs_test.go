package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
)

// TestREADMEDocumentsEveryFlag keeps the configuration reference true: every
// flag each service binary accepts has a row in README.md with its
// environment variable.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for bin, prefix := range map[string]string{"issuer": "AIRLOCK_ISSUER", "gateway": "AIRLOCK_GATEWAY", "stubmodel": "AIRLOCK_STUB"} {
		out, _ := exec.Command(filepath.Join(binDir, bin), "--help").CombinedOutput()
		flags := flagLine.FindAllStringSubmatch(string(out), -1)
		if len(flags) < 5 {
			t.Fatalf("%s --help listed %d flags:\n%s", bin, len(flags), out)
		}
		for _, f := range flags {
			env := prefix + "_" + strings.ToUpper(strings.ReplaceAll(f[1], "-", "_"))
			row := "| `--" + f[1] + "` | `" + env + "` |"
			if !strings.Contains(string(readme), row) {
				t.Errorf("README.md has no configuration row for %s --%s (%s)", bin, f[1], env)
			}
		}
	}
}

// docBlock is one fenced block of a Markdown file.
type docBlock struct {
	file string
	line int    // of the opening fence
	info string // the info string: sh, sh template, go, text, ...
	body string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// fencedBlocks returns the fenced code blocks of a Markdown file in order.
func fencedBlocks(t *testing.T, repo, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docBlock
	var cur *docBlock
	var body strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			rel, _ := filepath.Rel(repo, path)
			cur = &docBlock{file: rel, line: n, info: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			body.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.body = body.String()
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			body.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("%s: unclosed block", cur)
	}
	return out
}

// runnable reports whether a block's info string marks it as runnable
// against `make run`: exactly sh or bash. "sh template" (a real cluster,
// Docker, your own files) and output blocks (text, console) are not run.
func runnable(info string) bool { return info == "sh" || info == "bash" }

// Info strings the documentation may use; anything else is a typo that
// would silently keep a block out of this test.
var knownInfo = map[string]bool{"sh": true, "bash": true, "sh template": true, "bash template": true,
	"text": true, "console": true, "go": true, "mermaid": true, "yaml": true, "json": true, "python": true}

// The loopback ports `make run` uses; the test runs the real script on them.
var makeRunPorts = []int{9440, 9441, 9450, 9451, 9460}

// stubText is the beginning of every answer of the stub model.
const stubText = "Hello from the Airlock stub model"

// TestDocsShellBlocksRunAgainstMakeRun is the documentation, executed: it
// starts scripts/run.sh (what `make run` runs) on its default loopback
// ports, then runs every `sh`/`bash` block of README.md and deploy/README*.md
// and every command the run banner prints, each with bash from a directory
// laid out like the repository after `make build` and `make run` (./bin,
// ./data). Each must exit 0, and one that streams a completion must print
// the stub's text. The README's Go program is built and run the same way.
func TestDocsShellBlocksRunAgainstMakeRun(t *testing.T) {
	for _, p := range makeRunPorts {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond); err == nil {
			c.Close()
			t.Fatalf("port 127.0.0.1:%d is in use (another `make run`?): this test runs the documented commands against `make run` on its default ports; stop what holds them (ss -ltnp 'sport = :%d')", p, p)
		}
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(work, "bin")); err != nil {
		t.Fatal(err)
	}
	haveGRPCurl := linkGRPCurl(t, repo)

	banner := startMakeRun(t, repo, filepath.Join(work, "data"))

	var blocks []docBlock
	files, _ := filepath.Glob(filepath.Join(repo, "deploy", "README*.md"))
	for _, f := range append([]string{filepath.Join(repo, "README.md")}, files...) {
		for _, b := range fencedBlocks(t, repo, f) {
			if !knownInfo[b.info] {
				t.Errorf("%s: unknown info string %q: use sh (runnable against make run), sh template, text or console", b, b.info)
			}
			blocks = append(blocks, b)
		}
	}
	blocks = append(blocks, bannerBlocks(banner)...)

	ran := 0
	for _, b := range blocks {
		switch {
		case b.info == "go":
			t.Run(b.String(), func(t *testing.T) { runGoBlock(t, repo, work, b) })
			ran++
		case runnable(b.info):
			t.Run(b.String(), func(t *testing.T) {
				if strings.Contains(b.body, "grpcurl") && !haveGRPCurl {
					needs.Skip(t, "grpcurl is not installed (make grpcurl)")
				}
				runShellBlock(t, work, b)
			})
			ran++
		}
	}
	if ran < 5 {
		t.Fatalf("only %d runnable blocks found: is the convention (```sh runnable, ```sh template not) still in use?", ran)
	}

	// The banner's make targets exist (make bin/grpcurl once did not).
	for _, m := range regexp.MustCompile("make ([a-z][a-z-]*)").FindAllStringSubmatch(banner, -1) {
		if out, err := exec.Command("make", "-n", "-C", repo, m[1]).CombinedOutput(); err != nil {
			t.Errorf("the banner names `make %s`, which fails: %v\n%s", m[1], err, out)
		}
	}
}

// linkGRPCurl puts grpcurl next to the binaries under test if it is
// installed (./bin from `make grpcurl`, or on PATH).
func linkGRPCurl(t *testing.T, repo string) bool {
	t.Helper()
	src := filepath.Join(repo, "bin", "grpcurl")
	if _, err := os.Stat(src); err != nil {
		if src, err = exec.LookPath("grpcurl"); err != nil {
			return false
		}
	}
	dst := filepath.Join(binDir, "grpcurl")
	_ = os.Remove(dst)
	if err := os.Symlink(src, dst); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dst) })
	return true
}

// startMakeRun runs scripts/run.sh with the binaries under test and data
// in dataDir, waits for its banner and returns it; the script (and with it
// every service) is stopped when the test ends.
func startMakeRun(t *testing.T, repo, dataDir string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "scripts", "run.sh"))
	cmd.Env = append(cleanEnv(), "BIN="+binDir, "AIRLOCK_DATA="+dataDir)
	out, errOut := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			for _, name := range []string{"issuer", "gateway", "stubmodel"} {
				b, _ := os.ReadFile(filepath.Join(dataDir, "logs", name+".log"))
				t.Logf("---- %s.log ----\n%s", name, b)
			}
		}
	})
	deadline := time.After(90 * time.Second)
	for !strings.Contains(out.String(), "Press Ctrl-C to stop.") {
		select {
		case <-exited:
			t.Fatalf("scripts/run.sh exited before its banner:\n%s%s", out, errOut)
		case <-deadline:
			t.Fatalf("scripts/run.sh printed no banner within 90 s:\n%s%s", out, errOut)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return out.String()
}

// bannerBlocks returns the banner's commands: each run of lines indented by
// four spaces is one block (see scripts/run.sh).
func bannerBlocks(banner string) []docBlock {
	var out []docBlock
	var cur *docBlock
	for i, line := range strings.Split(banner, "\n") {
		if strings.HasPrefix(line, "    ") {
			if cur == nil {
				cur = &docBlock{file: "make run banner", line: i + 1, info: "sh"}
			}
			cur.body += strings.TrimPrefix(line, "    ") + "\n"
			continue
		}
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	return out
}

// cleanEnv is the test's environment without AIRLOCK_* variables, so a
// block sees only what it sets itself.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AIRLOCK_") {
			env = append(env, kv)
		}
	}
	return env
}

func runShellBlock(t *testing.T, dir string, b docBlock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", b.body)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s failed (%v): it must run as written against `make run`, or be marked ```sh template\n---- block ----\n%s---- stdout ----\n%s---- stderr ----\n%s",
			b, err, b.body, stdout.String(), stderr.String())
	}
	if streamsCompletion(b.body) && !strings.Contains(stdout.String(), stubText) && !strings.Contains(stdout.String(), `"text": "Hello "`) {
		t.Fatalf("%s streams a completion but printed no text of the stub's:\n---- stdout ----\n%s---- stderr ----\n%s", b, stdout.String(), stderr.String())
	}
}

func streamsCompletion(body string) bool {
	return strings.Contains(body, " complete ") || strings.Contains(body, "StreamCompletion") || strings.Contains(body, "go run")
}

// runGoBlock builds the README's Go program inside the module (so it
// compiles against this tree's pkg/client) and runs it against `make run`
// with the environment its comment names.
func runGoBlock(t *testing.T, repo, work string, b docBlock) {
	t.Helper()
	if !strings.HasPrefix(strings.TrimSpace(stripComments(b.body)), "package main") {
		t.Fatalf("%s: the Go block must be a whole program (package main) so that it can be compiled and run", b)
	}
	dir, err := os.MkdirTemp(repo, "_readme_go_") // leading _: ignored by ./...
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(b.body), 0o600); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "readme-example")
	build := exec.Command("go", "build", "-o", exe, "./"+filepath.Base(dir))
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s does not compile: %v\n%s", b, err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := exec.CommandContext(ctx, exe)
	run.Dir = work
	run.Env = append(cleanEnv(), "AIRLOCK_PLAINTEXT=true", "AIRLOCK_TOKEN_FILE=data/issuer/credentials/demo.token")
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), stubText) {
		t.Fatalf("%s run against make run: %v\n%s", b, err, out)
	}
}

func stripComments(src string) string {
	var b strings.Builder
	for _, l := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "//") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// syncBuffer collects a process's output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
