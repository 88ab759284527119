package connlimit_test

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/airlock-dev/airlock/pkg/connlimit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenerCapsConnectionsPerAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := connlimit.New(inner, 2)
	defer l.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2, c3 := dial(), dial(), dial()
	defer c1.Close()
	defer c2.Close()
	defer c3.Close()
	s1, s2 := <-accepted, <-accepted
	// The third is closed by the server: reading it ends.
	_ = c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c3.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection over the cap was not closed")
	}
	if l.Refused() != 1 || l.Open("127.0.0.1") != 2 {
		t.Fatalf("refused %d, open %d; want 1 and 2", l.Refused(), l.Open("127.0.0.1"))
	}
	// Closing one (twice: idempotent) frees exactly one place.
	s1.Close()
	s1.Close()
	c4 := dial()
	defer c4.Close()
	select {
	case s4 := <-accepted:
		s4.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a freed place was not reused")
	}
	s2.Close()
	if n := l.Open("127.0.0.1"); n != 0 {
		t.Fatalf("%d connections still counted after all closed", n)
	}
	l.Close()
	for range accepted {
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.7:5000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5000", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"bufconn", "bufconn"},
	} {
		if got := connlimit.Key(tc.in); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
