package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testkit/cluster"
	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// flow runs requests back to back with md until stop is closed and counts
// outcomes; a request counts as failed on any error or wrong text.
func (c *testCluster) flow(md map[string]string, stop <-chan struct{}) (ok, failed *atomic.Int64, lastErr *atomic.Value, wait func()) {
	ok, failed, lastErr = new(atomic.Int64), new(atomic.Int64), new(atomic.Value)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				text, err := c.stream(withMetadata(md), "duo_chat")
				if err != nil || text != stubAnswer {
					failed.Add(1)
					if err != nil {
						lastErr.Store(err.Error())
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}
	return ok, failed, lastErr, wg.Wait
}

func TestRotationUnderLoadLosesNothing(t *testing.T) {
	c := newCluster(t)
	keys := issuerv1.NewKeyServiceClient(dial(t, c.IssuerGRPC))
	stop := make(chan struct{})
	ok, failed, lastErr, wait := c.flow(cluster.Metadata(c.mint(nil, 0)), stop)
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		if _, err := keys.RotateKeys(c.asUser(context.Background(), "admin"), &issuerv1.RotateKeysRequest{}); err != nil {
			t.Fatalf("RotateKeys: %v", err)
		}
		// A token signed by the newly active key must work at once.
		if text, err := c.stream(withToken(c.mint(nil, 0)), "duo_chat"); err != nil || text != stubAnswer {
			t.Fatalf("token minted right after rotation %d: %v", i+1, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("during 3 rotations: %d ok, %d failed (last error: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	t.Logf("3 rotations under load: %d requests, 0 failed", ok.Load())
}

func TestIssuerDownValidTokensKeepWorking(t *testing.T) {
	c := newCluster(t)
	md := cluster.Metadata(c.mint(nil, 0))
	c.Issuer.Kill()
	stop := make(chan struct{})
	ok, failed, lastErr, wait := c.flow(md, stop)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("with the issuer down: %d ok, %d failed (last error: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}

	// The issuer comes back on the same data: the old token still verifies
	// and the models are kept.
	c.restartIssuer()
	if text, err := c.stream(withMetadata(md), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("old token after issuer restart: %v", err)
	}
	if text, err := c.stream(withToken(c.mint(nil, 0)), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("new token after issuer restart: %v", err)
	}
}

func TestRevocationTakesEffectWithinOneSecond(t *testing.T) {
	c := newCluster(t)
	tok := c.mint(nil, 0)
	if _, err := c.stream(withToken(tok), "duo_chat"); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	tokens := issuerv1.NewTokenServiceClient(dial(t, c.IssuerGRPC))
	if _, err := tokens.RevokeToken(c.asUser(context.Background(), "demo"), &issuerv1.RevokeTokenRequest{Jti: tok.ID}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	revokedAt := time.Now()
	for {
		_, err := c.stream(withToken(tok), "duo_chat")
		if status.Code(err) == codes.Unauthenticated {
			t.Logf("revocation effective after %v", time.Since(revokedAt).Round(time.Millisecond))
			return
		}
		if time.Since(revokedAt) > time.Second {
			t.Fatalf("revoked token still accepted after 1s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGatewayWithoutIssuerFailsClosed(t *testing.T) {
	c := newCluster(t)
	md := cluster.Metadata(c.mint(nil, 0))
	c.Issuer.Kill()
	// A fresh gateway with no key set: NOT_SERVING, and requests Unavailable.
	if err := c.LaunchGateway(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	_, err := c.stream(withMetadata(md), "duo_chat")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gateway with no keys: %v, want Unavailable", err)
	}
	c.restartIssuer()
	if err := c.WaitGateway(context.Background()); err != nil {
		t.Fatal(err)
	}
	if text, err := c.stream(withMetadata(md), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("after the issuer returned: %v", err)
	}
}
