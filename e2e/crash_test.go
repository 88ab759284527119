package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"
)

// acked collects the writes the issuer acknowledged before it died.
type acked struct {
	mu      sync.Mutex
	models  []string
	minted  []map[string]string // metadata of tokens minted and not revoked
	revoked []map[string]string // metadata of tokens whose revocation was acknowledged
	n       atomic.Int64
}

func (a *acked) add(dst *[]string, v string) {
	a.mu.Lock()
	*dst = append(*dst, v)
	a.mu.Unlock()
	a.n.Add(1)
}

func (a *acked) addMD(dst *[]map[string]string, md map[string]string) {
	a.mu.Lock()
	*dst = append(*dst, md)
	a.mu.Unlock()
	a.n.Add(1)
}

func TestIssuerCrashMidWriteKeepsAcknowledgedWrites(t *testing.T) {
	c := newCluster(t)
	models := issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
	tokens := issuerv1.NewTokenServiceClient(dial(t, c.IssuerGRPC))
	admin := c.asUser(context.Background(), "admin")
	demo := c.asUser(context.Background(), "demo")

	var a acked
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(2)
		go func() { // models
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("crash-%d-%d", w, i)
				cctx, cancel := context.WithTimeout(admin, 2*time.Second)
				_, err := models.CreateModel(cctx, &issuerv1.CreateModelRequest{Model: &issuerv1.Model{
					Name: name, Family: "general", Provider: "openai_compatible", Endpoint: "http://" + c.StubAddr + "/v1",
					Identifier: "airlock-stub", TrustedNetworks: []string{"127.0.0.1/32"},
				}})
				cancel()
				if err != nil {
					return // the issuer is gone
				}
				a.add(&a.models, name)
			}
		}()
		go func() { // tokens: mint, and revoke every other one
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				cctx, cancel := context.WithTimeout(demo, 2*time.Second)
				resp, err := tokens.MintToken(cctx, &issuerv1.MintTokenRequest{})
				cancel()
				if err != nil {
					return
				}
				if i%2 == 0 {
					a.addMD(&a.minted, resp.GetMetadata())
					continue
				}
				cctx, cancel = context.WithTimeout(demo, 2*time.Second)
				_, err = tokens.RevokeToken(cctx, &issuerv1.RevokeTokenRequest{Jti: resp.GetJti()})
				cancel()
				if err != nil {
					return
				}
				a.addMD(&a.revoked, resp.GetMetadata())
			}
		}()
	}
	// Kill once writes are flowing, so some are in flight at the crash.
	deadline := time.Now().Add(10 * time.Second)
	for a.n.Load() < 40 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.Issuer.Kill()
	wg.Wait()
	stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.models) == 0 || len(a.minted) == 0 || len(a.revoked) == 0 {
		t.Fatalf("too few writes before the crash: %d models, %d tokens, %d revocations", len(a.models), len(a.minted), len(a.revoked))
	}
	t.Logf("acknowledged before kill -9: %d models, %d tokens, %d revocations", len(a.models), len(a.minted), len(a.revoked))

	// Same data directory: the store must open and hold every acknowledged
	// write.
	c.restartIssuer()
	// A fresh connection: the old one may still be backing off from the
	// refused dials while the issuer was down.
	models = issuerv1.NewModelServiceClient(dial(t, c.IssuerGRPC))
	list, err := models.ListModels(admin, &issuerv1.ListModelsRequest{})
	if err != nil {
		t.Fatalf("ListModels after restart: %v", err)
	}
	have := map[string]bool{}
	for _, m := range list.GetModels() {
		have[m.GetName()] = true
	}
	for _, name := range a.models {
		if !have[name] {
			t.Errorf("acknowledged model %s lost in the crash", name)
		}
	}

	// A fresh gateway knows only what the restarted issuer serves: the
	// signing keys and the revocations must have survived.
	c.restartGateway()
	for _, md := range lastN(a.minted, 30) {
		if text, err := c.stream(withMetadata(md), "duo_chat"); err != nil || text != stubAnswer {
			t.Errorf("token minted before the crash: %v", err)
		}
	}
	for _, md := range lastN(a.revoked, 30) {
		deadline := time.Now().Add(2 * time.Second)
		for {
			_, err := c.stream(withMetadata(md), "duo_chat")
			if status.Code(err) == codes.Unauthenticated {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("token revoked before the crash still accepted: %v", err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// And the issuer keeps working on its recovered store.
	if text, err := c.stream(withToken(c.mint(nil, 0)), "duo_chat"); err != nil || text != stubAnswer {
		t.Fatalf("token minted after the restart: %v", err)
	}
}

// lastN returns the last n elements: the writes closest to the crash are
// the likeliest to be lost.
func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
