package controlplane

import (
	"net/http"
	"net/http/pprof"
)

// debugHandler serves the xDS debug endpoints and Go's pprof profiles
// (heap, goroutines, CPU) under /debug/pprof/. Both belong on the loopback
// debug listener: pprof can stall the process for a CPU profile's duration.
func debugHandler(xdsDebug http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/debug/", xdsDebug)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
