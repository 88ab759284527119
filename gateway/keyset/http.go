package keyset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/gateway/internal/backoff"
)

// maxJWKSBytes bounds a JWKS response body; a real set is a few KiB.
const maxJWKSBytes = 1 << 20

// NewHTTP returns a Cache fed by polling a JWKS URL (for example a GitLab
// instance's /oauth/discovery/keys). Run fetches at once, then again after
// the response's Cache-Control max-age clamped to [MinRefresh, MaxRefresh],
// and with jittered backoff after failures; an unknown kid fetches at once
// (rate-limited). A failed or empty fetch never replaces a good set. A nil
// client means one with FetchTimeout as its timeout.
func NewHTTP(jwksURL string, client *http.Client, opts Options) *Cache {
	c := newCache(opts)
	if client == nil {
		client = &http.Client{Timeout: c.opts.FetchTimeout}
	}
	h := &httpSource{c: c, url: jwksURL, client: client}
	c.fetch = h.fetch
	c.loop = h.run
	return c
}

type httpSource struct {
	c      *Cache
	url    string
	client *http.Client

	mu     sync.Mutex
	maxAge time.Duration // from the last successful response
	digest [sha256.Size]byte
}

func (h *httpSource) run(ctx context.Context) {
	b := backoff.Backoff{Min: h.c.opts.MinBackoff, Max: h.c.opts.MaxBackoff}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, h.c.opts.FetchTimeout)
		s, err := h.fetch(fctx)
		cancel()
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.c.log.Warn().Err(err).Str("url", h.url).Msg("JWKS fetch failed; keeping the last good key set")
			wait = min(b.Next(), h.c.opts.MaxRefresh)
		} else {
			b.Reset()
			h.c.install(s, false)
			h.mu.Lock()
			wait = h.maxAge
			h.mu.Unlock()
		}
		if !h.c.opts.Sleep(ctx, wait) {
			return
		}
	}
}

// fetch GETs the JWKS. Revisions count content changes: the same bytes keep
// the revision (and only refresh the confirmation time).
func (h *httpSource) fetch(ctx context.Context) (*snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, fmt.Errorf("keyset: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("keyset: JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// The body is not logged: it is not ours and may hold anything.
		return nil, fmt.Errorf("keyset: JWKS fetch: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("keyset: JWKS read: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("keyset: JWKS response too large")
	}
	digest := sha256.Sum256(bytes.TrimSpace(body))

	h.mu.Lock()
	defer h.mu.Unlock()
	var rev uint64 = 1
	if cur := h.c.snap.Load(); cur != nil {
		rev = cur.revision
		if digest != h.digest {
			rev++
		}
	}
	s, err := parseSet(body, rev)
	if err != nil {
		return nil, err
	}
	h.digest = digest
	h.maxAge = refreshInterval(resp.Header.Values("Cache-Control"), h.c.opts.MinRefresh, h.c.opts.MaxRefresh)
	return s, nil
}

// refreshInterval reads max-age from Cache-Control and clamps it. no-store,
// no-cache or a missing max-age poll at the minimum: the server did not
// promise the set stays valid, and polling too slowly is what turns a key
// rotation into an outage.
func refreshInterval(cacheControl []string, lo, hi time.Duration) time.Duration {
	maxAge := time.Duration(-1)
	for _, v := range cacheControl {
		for _, d := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return lo
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return lo
				}
				if n > int64(hi/time.Second) {
					n = int64(hi / time.Second)
				}
				maxAge = time.Duration(n) * time.Second
			}
		}
	}
	if maxAge < 0 {
		return lo
	}
	return min(max(maxAge, lo), hi)
}
