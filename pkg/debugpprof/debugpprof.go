// Package debugpprof serves Go's runtime profiles (net/http/pprof) under
// /debug/pprof/, for services that enable it with --pprof on their private
// HTTP port. It never registers on http.DefaultServeMux.
package debugpprof

import (
	"net/http"
	"net/http/pprof"
)

// Prefix is where the handler is mounted.
const Prefix = "/debug/pprof/"

// Handler returns the profile endpoints (index, cmdline, profile, symbol,
// trace, and every named profile through the index).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(Prefix, pprof.Index)
	mux.HandleFunc(Prefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc(Prefix+"profile", pprof.Profile)
	mux.HandleFunc(Prefix+"symbol", pprof.Symbol)
	mux.HandleFunc(Prefix+"trace", pprof.Trace)
	return mux
}
