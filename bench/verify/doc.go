// Package verify holds the suite's in-process benchmarks of token
// verification: the gateway's whole auth path (gateway/auth.Verifier over a
// real gateway/keyset.Cache) for distinct RS256 tokens, next to a bare jwx
// signature verification of the very same tokens, and the verified-token
// cache hit. The package has no API; `make bench` runs its benchmarks with
// -count and reads them through benchstat.
package verify
