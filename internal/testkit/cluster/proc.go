package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports; reading it would need
// cgo (sysconf), which the suite avoids.
const clockTick = 100

// Proc is a running child process. Its output is appended to a log file
// (when one is given) and its last 64 KiB are kept in memory, so a failure
// can be reported without reading the file.
type Proc struct {
	Name    string
	cmd     *exec.Cmd
	out     *tailBuffer
	logPath string
	done    chan struct{}
	err     error
}

// StartProc starts argv[0] with argv[1:], its output appended to logPath
// (none if empty) and its tail kept for Output. It returns once the process
// has been started, not once it serves. The process inherits the caller's
// environment.
func StartProc(name string, argv []string, logPath string) (*Proc, error) {
	if len(argv) == 0 {
		return nil, errors.New("cluster: empty command")
	}
	p := &Proc{Name: name, out: &tailBuffer{max: 64 << 10}, logPath: logPath, done: make(chan struct{})}
	var w io.Writer = p.out
	var logFile *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		logFile, w = f, io.MultiWriter(f, p.out)
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		if logFile != nil {
			_ = logFile.Close()
		}
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		if logFile != nil {
			_ = logFile.Close() // a diagnostic log; Wait's error is the one that matters
		}
		close(p.done)
	}()
	return p, nil
}

// PID returns the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns the last 64 KiB of the process's output.
func (p *Proc) Output() string { return p.out.String() }

// Log returns the whole log file, which holds the output of every process
// started with the same log path (a restarted process appends). It fails
// when the process was started without a log file.
func (p *Proc) Log() ([]byte, error) {
	if p.logPath == "" {
		return nil, fmt.Errorf("cluster: %s has no log file", p.Name)
	}
	return os.ReadFile(p.logPath)
}

// Stop sends SIGTERM and waits up to grace, then kills the process. It
// returns at once if the process has ended.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill ends the process at once with SIGKILL, as a crash would (kill -9),
// and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Signal sends sig to the process (SIGSTOP and SIGCONT freeze and resume
// it). It fails once the process has ended.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("cluster: %s has exited", p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Usage is a process's cumulative CPU time and current resident memory.
type Usage struct {
	CPU time.Duration // utime + stime
	RSS int64         // VmRSS in bytes
}

// Usage reads /proc/<pid>/stat and /proc/<pid>/status.
func (p *Proc) Usage() (Usage, error) { return ReadUsage(p.PID()) }

// ReadUsage reads the CPU time and resident memory of pid from /proc.
func ReadUsage(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, err
	}
	cpu, err := ParseStatCPU(stat)
	if err != nil {
		return Usage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, err
	}
	rss, err := ParseStatusRSS(status)
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPU: cpu, RSS: rss}, nil
}

// ParseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func ParseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("cluster: /proc stat: no command field")
	}
	// After ")": field 3 (state) is index 0, so utime (14) is 11, stime (15) 12.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("cluster: /proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 63)
	st, err2 := strconv.ParseUint(f[12], 10, 63)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cluster: /proc stat: %w", err)
	}
	ticks := ut + st
	if ticks > uint64(1<<62)/uint64(time.Second/clockTick) {
		return 0, errors.New("cluster: /proc stat: cpu time out of range")
	}
	return time.Duration(ticks) * (time.Second / clockTick), nil
}

// ParseStatusRSS returns VmRSS in bytes from the contents of
// /proc/<pid>/status.
func ParseStatusRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("cluster: /proc status: odd VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("cluster: /proc status: VmRSS %q", f[0])
		}
		return kb << 10, nil
	}
	return 0, errors.New("cluster: /proc status: no VmRSS")
}

// ReadSyscalls returns how many read and write system calls pid has made:
// syscr + syscw of /proc/<pid>/io, which count the read(2) and write(2)
// families (read, readv, pread, write, writev, ...), whatever the
// descriptor, but not recv(2)/send(2) and their kin (recvfrom, recvmsg,
// sendto, sendmsg), which bypass that accounting. Go's net package uses
// read and write on sockets, so a Go process's count is complete.
func ReadSyscalls(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	return ParseIOSyscalls(b)
}

// ParseIOSyscalls returns syscr + syscw from the contents of /proc/<pid>/io.
func ParseIOSyscalls(io []byte) (int64, error) {
	var sum int64
	seen := 0
	for _, line := range strings.Split(string(io), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "syscr" && name != "syscw") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("cluster: /proc io: %s %q", name, val)
		}
		sum += n
		seen++
	}
	if seen != 2 {
		return 0, errors.New("cluster: /proc io: no syscr and syscw")
	}
	return sum, nil
}

// FreeAddr returns a loopback address with a port free at the time of the
// call, for a process to bind later. The port is drawn at random from
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range), which
// outgoing connections take their local ports from: a port from that range
// (what listening on :0 gives) can be handed to some connection before the
// process binds it. Random, so that parallel tests rarely draw the same.
func FreeAddr() (string, error) {
	hi := ephemeralLow()
	lo := max(1024, hi-16384)
	for range 64 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
		if l, err := net.Listen("tcp", addr); err == nil {
			_ = l.Close()
			return addr, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

// ephemeralLow is the first port of the ephemeral range (Linux's default,
// 32768, when it cannot be read), read once.
var ephemeralLow = sync.OnceValue(readEphemeralLow)

func readEphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 1024+1024 {
		return 32768
	}
	return n
}

// Binaries are the commands a cluster runs, found in Config.BinDir.
var Binaries = []string{"issuer", "gateway", "stubmodel"}

// Tools are the other commands Build compiles: tests drive the cluster
// with them as an operator would.
var Tools = []string{"airlockctl"}

// Build compiles Binaries and Tools from this module's cmd/ into dir. The working
// directory must be inside the module (a test's package directory is).
func Build(ctx context.Context, dir string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("cluster: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("cluster: not inside the airlock module; cannot build the binaries")
	}
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, b := range append(append([]string{}, Binaries...), Tools...) {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// CheckBinaries reports the first of Binaries missing from dir.
func CheckBinaries(dir string) error {
	for _, b := range Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Errorf("binary %s missing in %s (run `go build -o %s/ ./cmd/...`): %w", b, dir, dir, err)
		}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
