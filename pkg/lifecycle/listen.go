package lifecycle

import (
	"fmt"
	"net"
)

// Listeners binds a service's addresses all or none: a service calls Bind
// for each of its flags and, when one fails, CloseAll so that no earlier
// listener stays open.
type Listeners struct {
	opened []net.Listener
}

// Bind listens on TCP addr and returns the listener, or an error naming
// --flag. An empty addr binds nothing and returns nil, nil (the listener
// is off).
func (b *Listeners) Bind(flag, addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	b.opened = append(b.opened, lis)
	return lis, nil
}

// CloseAll closes every listener Bind opened.
func (b *Listeners) CloseAll() {
	for _, lis := range b.opened {
		_ = lis.Close()
	}
	b.opened = nil
}
