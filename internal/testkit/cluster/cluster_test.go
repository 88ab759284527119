package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/pkg/client"
	"github.com/airlock-dev/airlock/pkg/client/clienttest"
	"github.com/airlock-dev/airlock/pkg/feature"
)

// sh starts a shell script as a Proc logging to dir/name.log.
func sh(t *testing.T, dir, name, script string) *Proc {
	t.Helper()
	p, err := StartProc(name, []string{"/bin/sh", "-c", script}, filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	return p
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("not after 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProcKeepsOutputInMemoryAndInItsLogFile(t *testing.T) {
	dir := t.TempDir()
	p := sh(t, dir, "talker", "echo out; echo err >&2; exec sleep 30")
	eventually(t, "both lines in the output", func() bool { return strings.Contains(p.Output(), "out\n") && strings.Contains(p.Output(), "err\n") })
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("Stop returned with the process running")
	}
	// A restarted process appends to the same log.
	q := sh(t, dir, "talker", "echo again")
	eventually(t, "the second process exits", q.Exited)
	log, err := q.Log()
	if err != nil || string(log) != "out\nerr\nagain\n" && string(log) != "err\nout\nagain\n" {
		t.Fatalf("Log = %q, %v; want both processes' output", log, err)
	}
	if q.Output() != "again\n" {
		t.Fatalf("Output = %q, want only this process's output", q.Output())
	}
}

func TestProcWithoutLogFileHasNoLog(t *testing.T) {
	p, err := StartProc("quiet", []string{"/bin/sh", "-c", "exit 0"}, "")
	if err != nil {
		t.Fatal(err)
	}
	p.Stop(time.Second)
	if _, err := p.Log(); err == nil {
		t.Fatal("Log of a process without a log file succeeded")
	}
}

func TestProcKillIgnoresATermHandlerAndSignalFailsAfterwards(t *testing.T) {
	// The shell ignores SIGTERM: only SIGKILL ends it.
	p := sh(t, t.TempDir(), "stubborn", "trap '' TERM; echo ready; while :; do sleep 1; done")
	eventually(t, "the trap is set", func() bool { return strings.Contains(p.Output(), "ready") })
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if p.Exited() {
		t.Fatal("SIGTERM ended a process that ignores it")
	}
	start := time.Now()
	p.Kill()
	if !p.Exited() || time.Since(start) > 5*time.Second {
		t.Fatalf("Kill: exited %v after %v", p.Exited(), time.Since(start))
	}
	if err := p.Signal(syscall.SIGCONT); err == nil {
		t.Fatal("Signal to an ended process succeeded")
	}
}

func TestProcStopKillsAfterGrace(t *testing.T) {
	p := sh(t, t.TempDir(), "stubborn", "trap '' TERM; echo ready; while :; do sleep 1; done")
	eventually(t, "the trap is set", func() bool { return strings.Contains(p.Output(), "ready") })
	start := time.Now()
	p.Stop(200 * time.Millisecond)
	if took := time.Since(start); !p.Exited() || took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("Stop: exited %v after %v, want killed after the 200ms grace", p.Exited(), took)
	}
}

func TestTailBufferKeepsTheLastBytes(t *testing.T) {
	tb := &tailBuffer{max: 8}
	for _, s := range []string{"abc", "defgh", "ijklmnopq"} {
		if n, err := tb.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := tb.String(); got != "jklmnopq" {
		t.Fatalf("tail = %q, want the last 8 bytes", got)
	}
}

func TestStartRefusesAConfigWithoutDirectories(t *testing.T) {
	for _, cfg := range []Config{{}, {BinDir: "bin"}, {WorkDir: t.TempDir()}} {
		if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "BinDir and WorkDir are required") {
			t.Errorf("Start(%+v) = %v, want the required-directories error", cfg, err)
		}
	}
}

// fakeBin writes stand-in binaries: stubmodel fails at once with a
// message; the others would serve nothing.
func fakeBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, script := range map[string]string{
		"stubmodel": "#!/bin/sh\necho \"stubmodel: bad flag $1\" >&2\nexit 3\n",
		"issuer":    "#!/bin/sh\nexec sleep 30\n",
		"gateway":   "#!/bin/sh\nexec sleep 30\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStartReportsAProcessThatExitsWithItsOutput(t *testing.T) {
	work := t.TempDir()
	_, err := Start(context.Background(), Config{BinDir: fakeBin(t), WorkDir: work, StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "stubmodel exited before serving") || !strings.Contains(err.Error(), "stubmodel: bad flag --addr") {
		t.Fatalf("Start = %v, want the exit and the process's output", err)
	}
	if log, _ := os.ReadFile(filepath.Join(work, "stubmodel.log")); !strings.Contains(string(log), "bad flag") {
		t.Fatalf("stubmodel.log = %q", log)
	}
}

// A port taken between FreeAddr and the process's bind makes Start begin
// again on fresh ports, a bounded number of times.
func TestStartRetriesAPortTakenBeforeTheBind(t *testing.T) {
	dir := fakeBin(t)
	tries := filepath.Join(t.TempDir(), "tries")
	script := "#!/bin/sh\necho \"$2\" >> " + tries + "\necho \"listen tcp $2: bind: address already in use\" >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "stubmodel"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{BinDir: dir, WorkDir: t.TempDir(), StartTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start = %v, want the bind failure", err)
	}
	b, _ := os.ReadFile(tries)
	addrs := strings.Fields(string(b))
	if len(addrs) != startAttempts {
		t.Fatalf("the stub was started %d times (%q), want %d", len(addrs), addrs, startAttempts)
	}
}

func TestStartGivesUpOnAProcessThatNeverServes(t *testing.T) {
	// No stub: the fake issuer runs but never answers health checks.
	start := time.Now()
	_, err := Start(context.Background(), Config{BinDir: fakeBin(t), WorkDir: t.TempDir(), NoStub: true, StartTimeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "issuer not healthy after 500ms") {
		t.Fatalf("Start = %v, want the health timeout", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("Start took %v; Close must not wait the full grace for a process it can stop", took)
	}
}

func TestCheckBinariesNamesTheMissingOne(t *testing.T) {
	dir := fakeBin(t)
	if err := CheckBinaries(dir); err != nil {
		t.Fatalf("complete directory: %v", err)
	}
	os.Remove(filepath.Join(dir, "gateway"))
	if err := CheckBinaries(dir); err == nil || !strings.Contains(err.Error(), "binary gateway missing") {
		t.Fatalf("CheckBinaries = %v, want gateway named", err)
	}
}

func TestMetadataAddsAuthorizationToAFreshMap(t *testing.T) {
	tok := &client.Token{AccessToken: "jwt", Metadata: map[string]string{"x-gitlab-instance-id": "i"}}
	md := Metadata(tok)
	if len(md) != 2 || md["authorization"] != "Bearer jwt" || md["x-gitlab-instance-id"] != "i" {
		t.Fatalf("Metadata = %v", md)
	}
	md["x-gitlab-instance-id"] = "forged"
	if tok.Metadata["x-gitlab-instance-id"] != "i" || len(tok.Metadata) != 1 {
		t.Fatal("changing the returned map changed the token")
	}
}

// fakeCluster is a Cluster whose connections reach pkg/client's fake issuer
// and gateway, and whose data directory holds the demo user's token file.
func fakeCluster(t *testing.T, issuerClock func() time.Time) (*Cluster, *clienttest.Issuer, *clienttest.Gateway) {
	t.Helper()
	iss := clienttest.NewIssuer(issuerClock)
	iss.AddUser("glpat-demo")
	iss.AddUser("glpat-chat", feature.DuoChat)
	gw := clienttest.NewGateway(iss)
	srv, err := clienttest.NewServer(func(s grpc.ServiceRegistrar) { iss.Register(s); gw.Register(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cc, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c := &Cluster{DataDir: t.TempDir(), issuerConn: cc, gatewayConn: cc}
	if err := os.MkdirAll(filepath.Join(c.DataDir, "credentials"), 0o700); err != nil {
		t.Fatal(err)
	}
	for user, pat := range map[string]string{"demo": "glpat-demo\n", "chat": "glpat-chat\n", "stranger": "glpat-unknown\n"} {
		if err := os.WriteFile(c.CredentialFile(user), []byte(pat), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c, iss, gw
}

func TestMintAndChatGoThroughPkgClient(t *testing.T) {
	c, iss, gw := fakeCluster(t, nil)
	gw.SetReply("one two three")
	ctx := context.Background()

	tok, err := c.Mint(ctx, "demo", []string{"duo_chat"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Scopes) != 1 || tok.Scopes[0] != "duo_chat" || tok.ID == "" || time.Until(tok.Expiry) > time.Minute {
		t.Fatalf("minted %v, want duo_chat for at most a minute", tok)
	}
	text, done, err := c.Chat(Outgoing(ctx, Metadata(tok)), "duo_chat")
	if err != nil || text != "one two three" || done == nil || done.Model != "fake-model" {
		t.Fatalf("Chat = %q, %+v, %v", text, done, err)
	}
	if got := gw.Requests(); len(got) != 1 || got[0].GetMessages()[0].GetContent() != "Say hello" {
		t.Fatalf("the gateway saw %v", got)
	}
	if iss.Mints() != 1 {
		t.Fatalf("%d mints, want 1", iss.Mints())
	}
}

func TestMintAndChatReportTheServersStatus(t *testing.T) {
	c, _, gw := fakeCluster(t, nil)
	ctx := context.Background()
	if _, err := c.Mint(ctx, "stranger", nil, 0); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Mint with an unknown PAT = %v, want Unauthenticated", err)
	}
	if _, err := c.Mint(ctx, "nobody", nil, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Mint for a user without a token file = %v, want not found", err)
	}

	chat, err := c.Mint(ctx, "chat", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, done, err := c.Chat(Outgoing(ctx, Metadata(chat)), "code_completions")
	if st, _ := status.FromError(err); st.Code() != codes.PermissionDenied || st.Message() != "Unauthorized to access code completions" || done != nil {
		t.Fatalf("Chat outside the token's scopes = %v, %v; want PermissionDenied with the gateway's message", done, err)
	}

	// Text before a failure comes back with the failure, details intact.
	gw.SetReply("partial answer")
	gw.FailWith(status.Error(codes.Unavailable, "model server unavailable"))
	text, _, err := c.Chat(Outgoing(ctx, Metadata(chat)), "duo_chat")
	if st, _ := status.FromError(err); st.Code() != codes.Unavailable || st.Message() != "model server unavailable" || text != "partial " {
		t.Fatalf("Chat = %q, %v; want the first delta and Unavailable", text, err)
	}
}

func TestMintReturnsATokenThatExpiredOnTheWay(t *testing.T) {
	// The issuer's clock runs an hour behind: its one-minute tokens have
	// expired when they arrive, as a one-second token may on a busy machine.
	c, _, _ := fakeCluster(t, func() time.Time { return time.Now().Add(-time.Hour) })
	tok, err := c.Mint(context.Background(), "demo", nil, time.Minute)
	if err != nil || tok.AccessToken == "" || time.Until(tok.Expiry) > -50*time.Minute {
		t.Fatalf("Mint = %v, %v; want the expired token itself", tok, err)
	}
}
