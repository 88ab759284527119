package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	"github.com/airlock-dev/airlock/internal/testkit/pgtest"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
	"github.com/airlock-dev/airlock/pkg/client"
)

// replica is one issuer process of the HA test.
type replica struct {
	name       string
	grpc, http string
	proc       *cluster.Proc // nil for the cluster's own issuer (c.Issuer)
	conn       *grpc.ClientConn
}

// TestHAThreeReplicasTwoGateways runs 3 issuer replicas on one PostgreSQL
// database and 2 gateways under steady mint + completion load:
//   - a revocation made through replica A is refused at a gateway that
//     watches only replica B within 1 s;
//   - kill -9 of the replica holding the key-rotation lease: no call of a
//     client using the retry policy fails, another replica takes the lease,
//     and a rotation forced through a survivor is published by every
//     replica and accepted by both gateways;
//   - PostgreSQL stopped: minting fails fast with Unavailable, gateways keep
//     serving; once it is back the replicas recover by themselves.
func TestHAThreeReplicasTwoGateways(t *testing.T) {
	srv := pgtest.Own(t)
	url := srv.NewDatabase(t)
	addrs := make([]string, 5) // B grpc, B http, C grpc, C http, G2 grpc
	for i := range addrs {
		a, err := cluster.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = a
	}
	// Replica A is the cluster's issuer (it bootstraps and holds the dev
	// KEK); gateway 1 reaches all three replicas through a list.
	c := startCluster(t, cluster.Config{
		// Unlimited minting: the load is one user (the shared limit is
		// pgstore's TestRateIsSharedByReplicas).
		IssuerArgs:  []string{"--postgres-url", url, "--mint-rate-per-user", "0"},
		GatewayHTTP: true,
		IssuerFront: func(a string) (string, error) { return a + "," + addrs[0] + "," + addrs[2], nil },
	})
	ctx := context.Background()
	replicas := []*replica{{name: "A", grpc: c.IssuerGRPC, http: c.IssuerHTTP}}
	for i, name := range []string{"B", "C"} {
		r := &replica{name: name, grpc: addrs[2*i], http: addrs[2*i+1]}
		p, err := cluster.StartProc("issuer-"+name, []string{filepath.Join(binDir, "issuer"),
			"--plaintext", "--postgres-url", url, "--mint-rate-per-user", "0", "--kek-file", filepath.Join(c.DataDir, "kek"),
			"--data-dir", t.TempDir(), "--grpc-addr", r.grpc, "--http-addr", r.http, "--issuer-url", c.IssuerURL()}, "")
		if err != nil {
			t.Fatal(err)
		}
		r.proc = p
		t.Cleanup(func() {
			p.Stop(10 * time.Second)
			if t.Failed() {
				t.Logf("---- issuer %s output ----\n%s", name, p.Output())
			}
		})
		replicas = append(replicas, r)
	}
	for _, r := range replicas {
		r.conn = dial(t, r.grpc)
		waitFor(t, 60*time.Second, "replica "+r.name+" serving", func() error {
			_, err := issuerv1.NewKeyServiceClient(r.conn).GetKeys(ctx, &issuerv1.GetKeysRequest{})
			return err
		})
	}
	// Gateway 2 watches replica B only.
	g2, err := cluster.StartProc("gateway-2", []string{filepath.Join(binDir, "gateway"), "--plaintext",
		"--grpc-addr", addrs[4], "--http-addr", "", "--api-http-addr", "", "--issuer-addr", replicas[1].grpc,
		"--expected-issuer", c.IssuerURL(), "--issuer-token-file", c.CredentialFile("gateway")}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		g2.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("---- gateway 2 output ----\n%s", g2.Output())
		}
	})
	g2conn := dial(t, addrs[4])
	gateways := []*grpc.ClientConn{c.GatewayConn(), g2conn}
	chat := func(ctx context.Context, gw int, tok *client.Token) error {
		_, _, err := cluster.Collect(client.New(gateways[gw]).Stream(cluster.Outgoing(ctx, cluster.Metadata(tok)), "duo_chat", client.User("Say hello")))
		return err
	}

	// Clients mint through all three replicas with the SDK's retry policy.
	mintConn, err := client.Dial(client.Options{IssuerAddr: replicas[0].grpc + "," + replicas[1].grpc + "," + replicas[2].grpc,
		GatewayAddr: c.GatewayGRPC, PAT: c.pat("demo"), Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer mintConn.Close()
	demoTokens := issuerv1.NewTokenServiceClient(mintConn.Issuer)
	mint := func(ctx context.Context) (*client.Token, error) {
		resp, err := demoTokens.MintToken(ctx, &issuerv1.MintTokenRequest{})
		if err != nil {
			return nil, err
		}
		return client.TokenFromResponse(resp)
	}
	tok, err := mint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "gateway 2 serving", func() error { return chat(ctx, 1, tok) })
	for gw := range gateways {
		if err := chat(ctx, gw, tok); err != nil {
			t.Fatalf("gateway %d: %v", gw+1, err)
		}
	}

	// Revoke through A; gateway 2 (watching B only) refuses within 1 s.
	revokedTok, err := mint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat(ctx, 1, revokedTok); err != nil {
		t.Fatal(err)
	}
	aTokens := issuerv1.NewTokenServiceClient(replicas[0].conn)
	revokedAt := time.Now()
	if _, err := aTokens.RevokeToken(c.asUser(ctx, "demo"), &issuerv1.RevokeTokenRequest{Jti: revokedTok.ID}); err != nil {
		t.Fatal(err)
	}
	for {
		err := chat(ctx, 1, revokedTok)
		if status.Code(err) == codes.Unauthenticated || status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Since(revokedAt) > time.Second {
			t.Fatalf("a token revoked through replica A still accepted by the gateway watching replica B after %v (last: %v)", time.Since(revokedAt), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revocation through replica A enforced at the gateway watching replica B after %v", time.Since(revokedAt).Round(time.Millisecond))

	// Steady load: mint through the list, complete through both gateways.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var calls, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				tok, err := mint(cctx)
				if err == nil {
					err = chat(cctx, w%2, tok)
				}
				cancel()
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	stopped := false
	finishLoad := func() {
		if !stopped {
			stopped = true
			stopLoad()
			wg.Wait()
		}
	}
	defer finishLoad()

	// Kill -9 the lease holder.
	holder := waitLeaseHolder(t, replicas, nil)
	time.Sleep(time.Second) // load runs before the kill
	before := calls.Load()
	if holder.proc == nil {
		c.Issuer.Kill()
	} else {
		holder.proc.Kill()
	}
	killed := time.Now()
	next := waitLeaseHolder(t, replicas, holder)
	takeover := time.Since(killed)
	t.Logf("replica %s held the key-rotation lease; killed; replica %s took it over after %v", holder.name, next.name, takeover.Round(time.Millisecond))
	if takeover > 20*time.Second {
		t.Fatalf("lease takeover took %v", takeover)
	}

	// A forced rotation through a survivor is published by every survivor.
	actx := c.asUser(ctx, "admin")
	rot, err := issuerv1.NewKeyServiceClient(next.conn).RotateKeys(actx, &issuerv1.RotateKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	newKID := activeKID(rot.GetKeySet())
	var survivors []*replica
	for _, r := range replicas {
		if r != holder {
			survivors = append(survivors, r)
		}
	}
	var slowest time.Duration
	for _, r := range survivors {
		waitFor(t, 10*time.Second, "replica "+r.name+" publishing the rotated key", func() error {
			ks, err := issuerv1.NewKeyServiceClient(r.conn).GetKeys(ctx, &issuerv1.GetKeysRequest{})
			if err != nil {
				return err
			}
			if got := activeKID(ks.GetKeySet()); got != newKID {
				return fmt.Errorf("active key %s, want %s", got, newKID)
			}
			return nil
		})
		slowest = max(slowest, time.Since(rotated))
	}
	t.Logf("rotation through replica %s published by every surviving replica within %v", next.name, slowest.Round(time.Millisecond))
	time.Sleep(time.Second) // load runs after the rotation too
	finishLoad()
	t.Logf("load: %d mint+completion calls (%d after the kill), %d failed", calls.Load(), calls.Load()-before, failed.Load())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed across the kill of the lease holder and the rotation: %s", failed.Load(), calls.Load(), strings.Join(failures[:min(5, len(failures))], "; "))
	}
	// Every survivor signs with the new key, and both gateways accept it.
	var fresh *client.Token
	for range 6 { // round robin: each survivor mints at least once
		if fresh, err = mint(ctx); err != nil {
			t.Fatal(err)
		}
		if kid := jwtKID(t, fresh.AccessToken); kid != newKID {
			t.Fatalf("a token minted after the rotation was signed by %s, want %s", kid, newKID)
		}
	}
	for gw := range gateways {
		waitFor(t, 10*time.Second, fmt.Sprintf("gateway %d accepting a token of the rotated key", gw+1), func() error { return chat(ctx, gw, fresh) })
	}

	// PostgreSQL down: minting fails fast with Unavailable; gateways serve.
	if err := srv.Halt(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = mint(mctx)
	cancel()
	if took := time.Since(start); status.Code(err) != codes.Unavailable || took > 15*time.Second {
		t.Fatalf("minting with PostgreSQL down: %v after %v, want Unavailable fast", err, took)
	}
	t.Logf("minting with PostgreSQL down failed with Unavailable after %v (retries included)", time.Since(start).Round(time.Millisecond))
	for gw := range gateways {
		if err := chat(ctx, gw, fresh); err != nil {
			t.Fatalf("gateway %d with PostgreSQL down: %v", gw+1, err)
		}
	}
	readiness := func(r *replica) healthpb.HealthCheckResponse_ServingStatus {
		hr, err := healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "readiness"})
		if err != nil {
			t.Fatalf("replica %s health: %v", r.name, err)
		}
		return hr.GetStatus()
	}
	for _, r := range survivors {
		waitFor(t, 10*time.Second, "replica "+r.name+" reporting the database down", func() error {
			if v := metric(t, r.http, "airlock_issuer_store_up"); v != 0 {
				return fmt.Errorf("airlock_issuer_store_up %v", v)
			}
			if st := readiness(r); st != healthpb.HealthCheckResponse_NOT_SERVING {
				return fmt.Errorf("readiness %v", st)
			}
			return nil
		})
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	waitFor(t, 60*time.Second, "minting after PostgreSQL is back", func() error { _, err := mint(ctx); return err })
	t.Logf("minting recovered %v after PostgreSQL came back", time.Since(resumed).Round(time.Millisecond))
	// Every surviving replica serves again (each is asked directly) and is
	// ready.
	for _, r := range survivors {
		waitFor(t, 30*time.Second, "replica "+r.name+" ready again", func() error {
			if st := readiness(r); st != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("readiness %v", st)
			}
			return nil
		})
		tokens := issuerv1.NewTokenServiceClient(r.conn)
		waitFor(t, 30*time.Second, "replica "+r.name+" minting again", func() error {
			_, err := tokens.MintToken(c.asUser(ctx, "demo"), &issuerv1.MintTokenRequest{})
			return err
		})
	}
}

// jwtKID returns the kid of a compact JWS's protected header.
func jwtKID(t *testing.T, jws string) string {
	t.Helper()
	head, _, _ := strings.Cut(jws, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func activeKID(ks *issuerv1.KeySet) string {
	for _, k := range ks.GetKeys() {
		if k.GetState() == issuerv1.KeyState_KEY_STATE_ACTIVE {
			return k.GetKid()
		}
	}
	return ""
}

// waitLeaseHolder waits until exactly one replica other than not reports
// holding the key-rotation lease, and returns it.
func waitLeaseHolder(t *testing.T, rs []*replica, not *replica) *replica {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var held []*replica
		for _, r := range rs {
			if r == not {
				continue
			}
			if v, ok := tryMetric(r.http, "airlock_issuer_key_lease_held"); ok && v == 1 {
				held = append(held, r)
			}
		}
		if len(held) == 1 {
			return held[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no single replica holds the key-rotation lease")
	return nil
}

func tryMetric(httpAddr, name string) (float64, bool) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	return cluster.Sample(page, name)
}

func metric(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	v, ok := tryMetric(httpAddr, name)
	if !ok {
		t.Fatalf("metric %s not served at %s", name, httpAddr)
	}
	return v
}

// waitFor polls f every 50 ms until it returns nil, failing t after within.
func waitFor(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
