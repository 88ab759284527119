package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// GatewayMetrics fetches the gateway's /metrics page (Config.GatewayHTTP).
func (c *Cluster) GatewayMetrics(ctx context.Context) ([]byte, error) {
	if c.GatewayHTTP == "" {
		return nil, errors.New("cluster: the gateway has no HTTP listener (Config.GatewayHTTP)")
	}
	return c.metrics(ctx, "http://"+c.GatewayHTTP+"/metrics")
}

// IssuerMetrics fetches the issuer's /metrics page.
func (c *Cluster) IssuerMetrics(ctx context.Context) ([]byte, error) {
	return c.metrics(ctx, "http://"+c.IssuerHTTP+"/metrics")
}

// metrics fetches a Prometheus text page of at most 32 MiB.
func (c *Cluster) metrics(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var b bytes.Buffer
	if _, err := copyLimited(&b, resp.Body, 32<<20); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Sample sums every sample of the metric family name in a Prometheus text
// exposition page whose labels contain every "k=\"v\"" pair in match. It
// reports false when no sample matched, so "absent" and "zero" differ.
func Sample(page []byte, name string, match ...string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(string(page), "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer name sharing the prefix
		}
		ok := true
		for _, m := range match {
			if !strings.Contains(labels, m) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// copyLimited copies at most limit bytes and fails if src holds more.
func copyLimited(dst io.Writer, src io.Reader, limit int64) (int64, error) {
	n, err := io.Copy(dst, io.LimitReader(src, limit+1))
	if err != nil {
		return n, err
	}
	if n > limit {
		return n, errors.New("cluster: metrics page too large")
	}
	return n, nil
}
