package pgtest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestDatabasesAreFreshAndApart(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if a == b {
		t.Fatalf("two databases share the URL %s", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	if _, err := ca.Exec(ctx, "CREATE TABLE x (v int)"); err != nil {
		t.Fatal(err)
	}
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'x'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("table of database a visible in b: %d, %v", n, err)
	}
}

// TestAKilledTestBinaryLeavesNoServer runs itself as a child test binary
// that starts a server and blocks, kills it with SIGKILL (as -timeout or
// an OOM kill would), and checks the server went with it.
func TestAKilledTestBinaryLeavesNoServer(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		s := pgtest.Shared(t)
		fmt.Printf("server %d %s\n", s.PID(), s.Dir)
		select {}
	}
	pgtest.Shared(t) // skip or fail as every test does when PostgreSQL is missing
	cmd := exec.Command(os.Args[0], "-test.run=^TestAKilledTestBinaryLeavesNoServer$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	if _, err := fmt.Fscanf(bufio.NewReader(out), "server %d %s\n", &pid, &dir); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child reported no server: %v", err)
	}
	defer os.RemoveAll(dir)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("server %d not running while the child lives: %v", pid, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d still running 10 s after its test binary was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
