// Package pgtest runs a throwaway PostgreSQL server for tests: initdb into a
// fresh temporary directory, a server listening only on a unix socket in
// that directory (no TCP port, so parallel test binaries cannot collide),
// and a fresh database per test. One server serves a whole test binary; it
// starts on first use and Main stops it and removes its directory. The
// server is a child process with a parent-death signal, so a test binary
// that dies (a -timeout panic) takes it along.
//
// The server binaries (initdb, postgres) are found on PATH or under
// /usr/lib/postgresql/<version>/bin (Debian's postgresql package). When they
// are missing, tests that need a database skip on a developer's machine and
// fail in CI (see package needs). initdb refuses to run as root, so as root
// the server runs as the unprivileged "postgres" user.
//
// The server trades durability for speed (fsync off): it is for tests only.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/testkit/needs"
)

// Superuser is the server's superuser role; tests connect as it.
const Superuser = "postgres"

// Server is a running throwaway PostgreSQL.
type Server struct {
	// Dir holds the data directory, the log and the unix socket.
	Dir string
	// BinDir holds the server and client binaries (pg_dump among them).
	BinDir string
	cred   *syscall.Credential // nil: run as the current user
	dbs    atomic.Int64
	proc   *os.Process
	exited chan struct{} // closed when postgres has exited
}

var (
	mu      sync.Mutex
	shared  *Server
	sharedE error
)

// Main runs the tests of m and then stops the shared server if one was
// started. Use it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
	}
	return code
}

// Shared returns the test binary's server, starting it on first use. It
// skips tb (fails it in CI) when PostgreSQL is not installed, and fails tb
// when the server does not start. The server is stopped by Main, so a
// package using Shared must call Main from its TestMain.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	if shared == nil && sharedE == nil {
		bin, err := FindBinDir()
		if err != nil {
			needs.Skip(tb, err.Error())
		}
		shared, sharedE = Start(bin)
	}
	if sharedE != nil {
		tb.Fatalf("pgtest: %v", sharedE)
	}
	return shared
}

// FindBinDir returns the directory holding initdb and postgres:
// the one of initdb on PATH (following symlinks), else the newest
// /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return false
			}
		}
		return true
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && ok(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found on PATH or under /usr/lib/postgresql/*/bin: install Debian's postgresql package")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Start initialises and starts a server with the binaries in binDir. As
// root it runs them as the "postgres" user, which must exist.
func Start(binDir string) (*Server, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, BinDir: binDir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and there is no unprivileged postgres user to run initdb as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.startServer(data); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// startServer runs postgres as a child that the kernel kills if this
// process dies first (a test binary killed by -timeout leaves no server
// behind), and waits until it accepts connections.
func (s *Server) startServer(data string) error {
	logf, err := os.Create(filepath.Join(s.Dir, "server.log"))
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), "-D", data,
		"-c", "listen_addresses=", "-c", "unix_socket_directories="+s.Dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200")
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.Dir, logf, logf
	// The parent-death signal fires when the thread that started the child
	// exits, so the thread stays locked to a goroutine waiting for the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	s.exited = make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait()
		}
		close(s.exited)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.proc = cmd.Process
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
			return fmt.Errorf("postgres exited at start:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.proc.Kill()
			<-s.exited
			log, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
			return fmt.Errorf("postgres not accepting connections after 60 s: %v\n%s", err, log)
		}
	}
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.proc.Pid }

// run runs one of the server's binaries as the server's user.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

// Stop stops the server at once (immediate shutdown, SIGKILL after 10 s)
// and removes its directory.
func (s *Server) Stop() error {
	_ = s.proc.Signal(syscall.SIGQUIT)
	var err error
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.proc.Kill()
		<-s.exited
		err = errors.New("postgres ignored SIGQUIT for 10 s and was killed")
	}
	if rerr := os.RemoveAll(s.Dir); err == nil {
		err = rerr
	}
	return err
}

// Halt stops the server (fast shutdown: every session is cut at once,
// committed data is kept; SIGKILL after 30 s) and keeps its data: Resume
// starts it again. For tests of what clients do while their database is
// down. (An immediate shutdown could lose the last commits: the test server
// runs with synchronous_commit off.)
func (s *Server) Halt() error {
	_ = s.proc.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = s.proc.Kill()
		<-s.exited
		return errors.New("postgres ignored SIGINT for 30 s and was killed")
	}
}

// Resume starts a server stopped by Halt again, on the same data and
// socket, and waits until it accepts connections.
func (s *Server) Resume() error {
	return s.startServer(filepath.Join(s.Dir, "data"))
}

// Own starts a server for tb alone (one a test may Halt without disturbing
// the others), stopped when tb ends. It skips or fails tb as Shared does.
func Own(tb testing.TB) *Server {
	tb.Helper()
	bin, err := FindBinDir()
	if err != nil {
		needs.Skip(tb, err.Error())
	}
	s, err := Start(bin)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// URL returns a postgres:// URL of database db on the server, as the
// superuser, over the unix socket.
func (s *Server) URL(db string) string {
	q := url.Values{"host": {s.Dir}, "user": {Superuser}, "sslmode": {"disable"}}
	return "postgres:///" + url.PathEscape(db) + "?" + q.Encode()
}

// NewDatabase creates an empty database for tb, dropped when tb ends, and
// returns its URL.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	if err := s.exec(fmt.Sprintf("CREATE DATABASE %s", name)); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.exec(fmt.Sprintf("DROP DATABASE %s WITH (FORCE)", name)); err != nil {
			tb.Errorf("pgtest: drop database: %v", err)
		}
	})
	return s.URL(name)
}

// NewDatabase is Shared(tb).NewDatabase(tb).
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return Shared(tb).NewDatabase(tb)
}

// exec runs one statement in the maintenance database.
func (s *Server) exec(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }()
	_, err = conn.Exec(ctx, sql)
	return err
}

// Dump runs pg_dump on the database at dbURL and returns the plain SQL.
func (s *Server) Dump(dbURL string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.BinDir, "pg_dump"), "--dbname", dbURL)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("pg_dump: %v\n%s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("pg_dump: %w", err)
	}
	return out, nil
}
