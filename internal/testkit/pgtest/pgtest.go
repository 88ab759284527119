// Package pgtest runs a throwaway PostgreSQL server for tests: initdb into a
// fresh temporary directory, a server listening only on a unix socket in
// that directory (no TCP port, so parallel test binaries cannot collide),
// and a fresh database per test. One server serves a whole test binary; it
// starts on first use and Main stops it and removes its directory.
//
// The server binaries (initdb, pg_ctl, postgres) are found on PATH or under
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/needs"
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

// FindBinDir returns the directory holding initdb, pg_ctl and postgres:
// the one of initdb on PATH (following symlinks), else the newest
// /usr/lib/postgresql/<version>/bin.
func FindBinDir() (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
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
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under /usr/lib/postgresql/*/bin: install Debian's postgresql package")
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
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and there is no unprivileged postgres user to run initdb as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	opts := strings.Join([]string{
		"-c listen_addresses=''",
		"-c unix_socket_directories=" + dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c max_connections=200",
	}, " ")
	if out, err := s.run("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(dir, "server.log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return s, nil
}

// run runs one of the server's binaries as the server's user.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd.CombinedOutput()
}

// Stop stops the server at once and removes its directory.
func (s *Server) Stop() error {
	out, err := s.run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", filepath.Join(s.Dir, "data"))
	if rerr := os.RemoveAll(s.Dir); err == nil && rerr != nil {
		return rerr
	}
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
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
	defer conn.Close(ctx)
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
