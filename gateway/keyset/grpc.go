package keyset

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"

	issuerv1 "github.com/airlock-dev/airlock/pkg/api/airlock/issuer/v1"

	"github.com/airlock-dev/airlock/gateway/internal/follow"
)

// NewGRPC returns a Cache fed by the issuer's KeyService on cc. Run loads
// the set with GetKeys, then keeps it current with a WatchKeys stream,
// reconnecting with jittered exponential backoff; an unknown kid refetches
// with GetKeys. Nothing is fetched until Run is called, except by the
// unknown-kid path of Lookup, which needs a loaded set first.
func NewGRPC(cc grpc.ClientConnInterface, opts Options) *Cache {
	c := newCache(opts)
	client := issuerv1.NewKeyServiceClient(cc)
	c.fetch = func(ctx context.Context) (*snapshot, error) {
		resp, err := client.GetKeys(ctx, &issuerv1.GetKeysRequest{})
		if err != nil {
			return nil, fmt.Errorf("keyset: GetKeys: %w", err)
		}
		return fromProto(resp.GetKeySet())
	}
	c.loop = func(ctx context.Context) { c.runGRPC(ctx, client) }
	return c
}

func fromProto(ks *issuerv1.KeySet) (*snapshot, error) {
	if ks == nil {
		return nil, errors.New("keyset: response has no key set")
	}
	return parseSet(ks.GetJwks(), ks.GetRevision())
}

// runGRPC follows WatchKeys until ctx is done. Before each stream, while
// no set is loaded yet, it tries GetKeys: a set in hand sooner, even if the
// stream cannot be opened.
func (c *Cache) runGRPC(ctx context.Context, client issuerv1.KeyServiceClient) {
	follow.Run(ctx, follow.Config{What: "key set watch", MinBackoff: c.opts.MinBackoff, MaxBackoff: c.opts.MaxBackoff,
		Sleep: c.opts.Sleep, Logger: c.log}, func(ctx context.Context) (bool, error) {
		if c.snap.Load() == nil {
			fctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
			s, err := c.fetch(fctx)
			cancel()
			if err == nil {
				c.install(s, false)
			} else if ctx.Err() == nil {
				c.log.Warn().Err(err).Msg("initial key set fetch failed")
			}
		}
		return c.watch(ctx, client)
	})
}

// watch runs one WatchKeys stream until it fails. It reports whether any
// message arrived. While the stream delivers, the set is live (current by
// definition); when it breaks, the staleness clock starts from that moment.
func (c *Cache) watch(ctx context.Context, client issuerv1.KeyServiceClient) (got bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// known_revision 0: the issuer answers at once with the full set, which
	// both proves the stream is up and resynchronises after an issuer
	// restart that may have reset its revision.
	// WaitForReady: while the issuer is unreachable the call waits for the
	// connection (which redials promptly) instead of failing at once, so the
	// stream is back as soon as the issuer is.
	stream, err := client.WatchKeys(wctx, &issuerv1.WatchKeysRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return false, err
	}
	defer func() {
		if c.live.Swap(false) {
			c.confirmed.Store(c.opts.Now().UnixNano())
		}
	}()
	for {
		msg, err := stream.Recv()
		if err != nil {
			return got, err
		}
		s, perr := fromProto(msg.GetKeySet())
		if perr != nil {
			// A set we cannot use must not replace a good one; keep the
			// stream and wait for the next revision.
			c.log.Error().Err(perr).Msg("ignoring unusable key set from watch")
			continue
		}
		got = true
		c.install(s, true)
		c.live.Store(true)
	}
}
