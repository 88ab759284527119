package lifecycle

import (
	"net"
	"strings"
	"testing"
)

func TestListenersBindAllOrNone(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	var b Listeners
	first, err := b.Bind("grpc-addr", "127.0.0.1:0")
	if err != nil || first == nil {
		t.Fatalf("Bind = %v, %v", first, err)
	}
	if off, err := b.Bind("health-addr", ""); off != nil || err != nil {
		t.Fatalf("empty address: %v, %v, want nothing bound", off, err)
	}
	_, err = b.Bind("http-addr", busy.Addr().String())
	if err == nil || !strings.HasPrefix(err.Error(), "--http-addr: ") {
		t.Fatalf("busy address: %v, want an error naming --http-addr", err)
	}
	b.CloseAll()
	// The first listener is closed: its port can be bound again.
	again, err := net.Listen("tcp", first.Addr().String())
	if err != nil {
		t.Fatalf("the first listener stayed open after CloseAll: %v", err)
	}
	_ = again.Close()
}
