package xds

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler serves the operational endpoints:
//
//	/healthz          200 while the process serves HTTP
//	/readyz           200 when ready() reports true, else 503 with the reason;
//	                  a nil ready means "once the first World is set"
//	/metrics          Prometheus metrics from Options.Gatherer
//	/debug/proxies    JSON: Proxies()
//	/debug/snapshots  JSON: Snapshots()
func (s *Server) HTTPHandler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			writeText(w, http.StatusServiceUnavailable, "not ready: the initial sync with Kubernetes has not completed, or the control plane is shutting down")
			return
		}
		if ready == nil && !s.hasWorld() {
			writeText(w, http.StatusServiceUnavailable, "not ready: no World has been set yet")
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/proxies", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Proxies())
	})
	mux.HandleFunc("GET /debug/snapshots", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Snapshots())
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text + "\n"))
}

func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding JSON: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(data, '\n'))
}
