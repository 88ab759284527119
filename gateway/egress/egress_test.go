package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/gateway/internal/burstconn"
)

// flipResolver answers the first lookup with first and every later one with
// later, like a rebinding DNS server.
type flipResolver struct {
	first, later []netip.Addr
	calls        atomic.Int32
}

func (r *flipResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	if r.calls.Add(1) == 1 {
		return r.first, nil
	}
	return r.later, nil
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func TestDial(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(lis.Addr().String())

	tests := []struct {
		name      string
		trusted   []string
		host      string
		resolver  *flipResolver
		forbidden bool
	}{
		{"literal ip inside", []string{"127.0.0.0/8"}, "127.0.0.1", nil, false},
		{"bare ip as /32", []string{"127.0.0.1"}, "127.0.0.1", nil, false},
		{"literal ip outside", []string{"10.0.0.0/8"}, "127.0.0.1", nil, true},
		{"nothing trusted", nil, "127.0.0.1", nil, true},
		{"name resolving inside", []string{"127.0.0.0/8"}, "model.local", &flipResolver{first: addrs("127.0.0.1")}, false},
		{"one of several outside", []string{"127.0.0.0/8"}, "model.local", &flipResolver{first: addrs("127.0.0.1", "169.254.169.254")}, true},
		{"ipv4-mapped ipv6 is unmapped", []string{"127.0.0.0/8"}, "model.local", &flipResolver{first: addrs("::ffff:127.0.0.1")}, false},
		{"metadata address", []string{"127.0.0.0/8"}, "169.254.169.254", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Resolver
			if tt.resolver != nil {
				r = tt.resolver
			}
			g, err := New(tt.trusted, 0, r)
			if err != nil {
				t.Fatal(err)
			}
			c, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort(tt.host, port))
			if tt.forbidden {
				if !errors.Is(err, ErrForbidden) {
					t.Fatalf("err = %v, want ErrForbidden", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
		})
	}
}

func TestRebindingCannotRedirect(t *testing.T) {
	// The guard resolves exactly once per dial and connects to what it
	// checked; a resolver that would answer differently later is never asked.
	r := &flipResolver{first: addrs("10.1.2.3"), later: addrs("127.0.0.1")}
	g, _ := New([]string{"127.0.0.0/8"}, 0, r)
	_, err := g.DialContext(context.Background(), "tcp", "evil.example:80")
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v, want ErrForbidden", err)
	}
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("resolver called %d times, want 1", n)
	}
}

func TestInvalidCIDR(t *testing.T) {
	_, err := New([]string{"10.0.0.0/33"}, 0, nil)
	if err == nil || !strings.Contains(err.Error(), `invalid trusted network "10.0.0.0/33"`) {
		t.Fatalf("err = %v", err)
	}
}

// The transport's connections read the model in bursts (gateway/internal/
// burstconn): a fast answer costs a system call or two, not one per
// ReadBufferSize.
func TestTransportReadsInBursts(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		if c, err := lis.Accept(); err == nil {
			c.Close()
		}
	}()
	g, err := New([]string{"127.0.0.1/32"}, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.burstDialContext(context.Background(), "tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*burstconn.Conn); !ok {
		t.Errorf("the transports dial %T, want *burstconn.Conn", c)
	}
}
