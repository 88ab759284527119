package authn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/issuer/store"
)

// countingLookup is fakeLookup counting its PAT lookups.
type countingLookup struct {
	fakeLookup
	n atomic.Int32
}

func (c *countingLookup) GetPATByHash(ctx context.Context, h []byte) (store.PAT, error) {
	c.n.Add(1)
	return c.fakeLookup.GetPATByHash(ctx, h)
}

const wrong = "alpat_wrongwrongwrongwrongwrongwrongwrongwrongwrA"

func TestLockoutAfterTheBurstOfInvalidPATs(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	look := &countingLookup{}
	pats := NewPATs(look, clock, NewLockout(6)) // one more every 10 s
	var locked []string
	pats.OnLockout(func(from string) { locked = append(locked, from) })
	ctx := context.Background()
	const a, b = "192.0.2.7:40000", "198.51.100.1:5000"

	for i := range 6 {
		if _, err := pats.Check(ctx, a, wrong); !errors.Is(err, ErrInvalidPAT) {
			t.Fatalf("invalid PAT %d: %v, want ErrInvalidPAT", i+1, err)
		}
	}
	if len(locked) != 1 || locked[0] != a {
		t.Fatalf("lockouts reported %v, want one for %s", locked, a)
	}
	lookups := look.n.Load()
	// Locked out: even the valid PAT is refused, from any port of the
	// address, and nothing is looked up.
	for _, from := range []string{a, "192.0.2.7:40001"} {
		if _, err := pats.Check(ctx, from, good); !errors.Is(err, ErrLockedOut) {
			t.Fatalf("valid PAT from %s while locked out: %v, want ErrLockedOut", from, err)
		}
	}
	if got := look.n.Load(); got != lookups {
		t.Fatalf("%d store lookups while locked out, want none", got-lookups)
	}
	if d := pats.RetryAfter(a); d <= 0 || d > 10*time.Second {
		t.Fatalf("RetryAfter = %v, want (0, 10s]", d)
	}
	// Other addresses are unaffected.
	if id, err := pats.Check(ctx, b, good); err != nil || id.UserID != 1 {
		t.Fatalf("valid PAT from another address: %v, %v", id, err)
	}
	// One allowance back after 10 s: the valid PAT passes and costs none.
	now = now.Add(10 * time.Second)
	if pats.RetryAfter(a) != 0 {
		t.Fatalf("RetryAfter after the refill = %v", pats.RetryAfter(a))
	}
	for range 3 {
		if _, err := pats.Check(ctx, a, good); err != nil {
			t.Fatalf("valid PAT after the refill: %v", err)
		}
	}
	// The next invalid one spends it: locked out again, reported again.
	if _, err := pats.Check(ctx, a, wrong); !errors.Is(err, ErrInvalidPAT) {
		t.Fatalf("invalid PAT after the refill: %v", err)
	}
	if _, err := pats.Check(ctx, a, good); !errors.Is(err, ErrLockedOut) || len(locked) != 2 {
		t.Fatalf("after spending the refill: %v, %d lockouts reported", err, len(locked))
	}
}

func TestLockoutKeys(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name      string
		fail, try string
		shared    bool
	}{
		{"same IPv4, other port", "192.0.2.1:1", "192.0.2.1:2", true},
		{"other IPv4", "192.0.2.1:1", "192.0.2.2:1", false},
		{"same IPv6 /64", "[2001:db8::1]:1", "[2001:db8::ffff]:1", true},
		{"other IPv6 /64", "[2001:db8::1]:1", "[2001:db8:0:1::1]:1", false},
		{"IPv4-mapped IPv6 is the IPv4", "[::ffff:192.0.2.1]:1", "192.0.2.1:9", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLockout(1)
			if !l.Failed(tc.fail, now) {
				t.Fatal("one failure of an allowance of one did not lock out")
			}
			if got := l.RetryAfter(tc.try, now) > 0; got != tc.shared {
				t.Fatalf("%s locked out after %s failed: %v, want %v", tc.try, tc.fail, got, tc.shared)
			}
		})
	}
}

func TestNoLockoutWhenDisabled(t *testing.T) {
	if NewLockout(0) != nil || NewLockout(-1) != nil {
		t.Fatal("a rate of 0 or less must give no Lockout")
	}
	look := &countingLookup{}
	pats := NewPATs(look, time.Now, nil)
	for range 1000 {
		if _, err := pats.Check(context.Background(), "192.0.2.1:1", wrong); !errors.Is(err, ErrInvalidPAT) {
			t.Fatalf("without a lockout: %v", err)
		}
	}
	if _, err := pats.Check(context.Background(), "192.0.2.1:1", good); err != nil {
		t.Fatal(err)
	}
}

func TestLockoutMemoryIsBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewLockout(2)
	for i := range lockoutMaxAddrs + 10 {
		l.Failed(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255), now)
	}
	if n := len(l.addrs); n > lockoutMaxAddrs || n < lockoutMaxAddrs*99/100 {
		t.Fatalf("%d addresses remembered, want between 99 %% of the bound %d and the bound", n, lockoutMaxAddrs)
	}
	// Refilled addresses are what goes first: an hour later, once the bound
	// is reached again, only the addresses that failed since remain.
	later := now.Add(time.Hour)
	fresh := lockoutMaxAddrs/100 + 1
	for i := range fresh {
		l.Failed(fmt.Sprintf("172.16.%d.%d:1", i>>8&255, i&255), later)
	}
	if n := len(l.addrs); n > fresh {
		t.Fatalf("%d addresses remembered after all refilled and %d new failures, want at most %d", n, fresh, fresh)
	}
}

// The gRPC authenticator keys the lockout on the peer's address and
// refuses with ResourceExhausted.
func TestAuthFuncLockout(t *testing.T) {
	authFn := New(NewPATs(fakeLookup{}, time.Now, NewLockout(2)))
	call := func(ip, pat string) error {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+pat))
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}})
		_, err := authFn(ctx)
		return err
	}
	for range 2 {
		if code := status.Code(call("192.0.2.9", wrong)); code != codes.Unauthenticated {
			t.Fatalf("invalid PAT: %v", code)
		}
	}
	err := call("192.0.2.9", good)
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || st.Message() != MsgLockedOut {
		t.Fatalf("valid PAT from the locked-out address: %v", err)
	}
	if err := call("192.0.2.10", good); err != nil {
		t.Fatalf("valid PAT from another address: %v", err)
	}
}
